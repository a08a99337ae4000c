//! Readiness waiting for worker threads: an `epoll` instance, a one-shot
//! `poll` on a single descriptor, and an `eventfd` to wake a waiting thread
//! from another one.
//!
//! The daemon runs worker threads rather than async tasks (`DESIGN.md`,
//! "Data path"); each thread waits here on its own set of descriptors.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::Result;
use crate::sys::{cvt, cvt_size, owned, retry};

/// What to wait for on a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    /// Data to read (or a peer hang-up to notice).
    pub readable: bool,
    /// Room to write.
    pub writable: bool,
}

impl Interest {
    /// Readable only.
    pub const READABLE: Self = Self {
        readable: true,
        writable: false,
    };
    /// Writable only.
    pub const WRITABLE: Self = Self {
        readable: false,
        writable: true,
    };
    /// Both.
    pub const BOTH: Self = Self {
        readable: true,
        writable: true,
    };

    fn epoll_bits(self) -> u32 {
        let mut bits = 0;
        if self.readable {
            bits |= libc::EPOLLIN | libc::EPOLLRDHUP;
        }
        if self.writable {
            bits |= libc::EPOLLOUT;
        }
        bits as u32
    }
}

/// One readiness report from [`Epoll::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token given when the descriptor was registered.
    pub token: u64,
    /// Data (or end of stream) is there to read.
    pub readable: bool,
    /// There is room to write.
    pub writable: bool,
    /// An error or hang-up was reported; a read or write will tell which.
    pub error: bool,
}

/// An `epoll` instance, level-triggered.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// Creates an epoll instance (close-on-exec).
    ///
    /// # Errors
    ///
    /// `epoll_create1` failing.
    pub fn new() -> Result<Self> {
        // SAFETY: plain system call with a flag argument.
        let ret = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        Ok(Self {
            fd: owned("epoll_create1", ret)?,
        })
    }

    /// Starts watching `fd`; events for it carry `token`.
    ///
    /// The caller keeps `fd` open while registered, or removes it first.
    ///
    /// # Errors
    ///
    /// `epoll_ctl(EPOLL_CTL_ADD)` failing (`EEXIST` if already registered).
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            token,
            interest,
            "epoll_ctl(ADD)",
        )
    }

    /// Changes the token or interest of a registered `fd`.
    ///
    /// # Errors
    ///
    /// `epoll_ctl(EPOLL_CTL_MOD)` failing (`ENOENT` if not registered).
    pub fn modify(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> Result<()> {
        self.ctl(
            libc::EPOLL_CTL_MOD,
            fd.as_raw_fd(),
            token,
            interest,
            "epoll_ctl(MOD)",
        )
    }

    /// Stops watching `fd`.
    ///
    /// # Errors
    ///
    /// `epoll_ctl(EPOLL_CTL_DEL)` failing (`ENOENT` if not registered).
    pub fn delete(&self, fd: BorrowedFd<'_>) -> Result<()> {
        self.ctl(
            libc::EPOLL_CTL_DEL,
            fd.as_raw_fd(),
            0,
            Interest::READABLE,
            "epoll_ctl(DEL)",
        )
    }

    /// Waits up to `timeout` (forever with `None`) and fills `events`;
    /// returns how many are ready (0 on timeout). An interrupted wait
    /// returns 0 too, so callers can check their stop flag.
    ///
    /// # Errors
    ///
    /// `epoll_wait` failing for another reason than `EINTR`.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> Result<usize> {
        let max = libc::c_int::try_from(events.buf.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: the kernel writes at most `max` entries into the buffer,
        // which holds `events.buf.len()` of them.
        let ret = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.buf.as_mut_ptr(),
                max,
                timeout_ms(timeout),
            )
        };
        let count = match cvt("epoll_wait", ret) {
            Ok(n) => n.unsigned_abs() as usize,
            Err(err) if err.raw_os_error() == Some(libc::EINTR) => 0,
            Err(err) => return Err(err),
        };
        events.len = count;
        Ok(count)
    }

    fn ctl(
        &self,
        op: libc::c_int,
        fd: RawFd,
        token: u64,
        interest: Interest,
        call: &'static str,
    ) -> Result<()> {
        let mut event = libc::epoll_event {
            events: interest.epoll_bits(),
            u64: token,
        };
        // SAFETY: `event` is a valid epoll_event for the whole call (the
        // kernel ignores it for EPOLL_CTL_DEL).
        let ret = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &raw mut event) };
        cvt(call, ret).map(drop)
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A reusable buffer of readiness events.
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    /// Room for up to `capacity` events per wait (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            len: 0,
        }
    }

    /// The events of the last wait.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf[..self.len].iter().map(|e| {
            let bits = e.events as libc::c_int;
            Event {
                token: e.u64,
                readable: bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) != 0,
                writable: bits & libc::EPOLLOUT != 0,
                error: bits & (libc::EPOLLERR | libc::EPOLLHUP) != 0,
            }
        })
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Waits until `fd` is ready for `interest` or `timeout` passes; returns
/// whether it became ready (errors and hang-ups count as ready).
///
/// # Errors
///
/// `poll` failing.
pub fn poll_one(fd: BorrowedFd<'_>, interest: Interest, timeout: Option<Duration>) -> Result<bool> {
    let mut events = 0;
    if interest.readable {
        events |= libc::POLLIN;
    }
    if interest.writable {
        events |= libc::POLLOUT;
    }
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // An interrupted wait is retried with the full timeout; callers bound
    // their loops by the number of waits, not by wall-clock precision.
    let ready = retry(|| {
        // SAFETY: one valid pollfd, and nfds is 1.
        let ret = unsafe { libc::poll(&raw mut pfd, 1, timeout_ms(timeout)) };
        cvt("poll", ret)
    })?;
    Ok(ready > 0)
}

/// An `eventfd` counter: one thread [`notify`](EventFd::notify)s, another
/// waits for readability (typically through [`Epoll`]) and
/// [`drain`](EventFd::drain)s.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// Creates a non-blocking, close-on-exec eventfd with count zero.
    ///
    /// # Errors
    ///
    /// `eventfd` failing.
    pub fn new() -> Result<Self> {
        // SAFETY: plain system call with integer arguments.
        let ret = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        Ok(Self {
            fd: owned("eventfd", ret)?,
        })
    }

    /// Adds one to the counter, making the descriptor readable.
    ///
    /// # Errors
    ///
    /// `write` failing (the counter cannot overflow in practice).
    pub fn notify(&self) -> Result<()> {
        let one: u64 = 1;
        retry(|| {
            // SAFETY: eventfd writes take exactly 8 bytes, which `one` has.
            let ret = unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8) };
            cvt_size("write(eventfd)", ret)
        })
        .map(drop)
    }

    /// Resets the counter and returns the number of notifications since the
    /// last drain (0 if none).
    ///
    /// # Errors
    ///
    /// `read` failing for another reason than an empty counter.
    pub fn drain(&self) -> Result<u64> {
        let mut count: u64 = 0;
        let result = retry(|| {
            // SAFETY: eventfd reads write exactly 8 bytes into `count`.
            let ret = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut count).cast(), 8) };
            cvt_size("read(eventfd)", ret)
        });
        match result {
            Ok(_) => Ok(count),
            Err(err) if err.is_would_block() => Ok(0),
            Err(err) => Err(err),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A timeout in milliseconds for `poll`/`epoll_wait`, rounded up so a short
/// non-zero timeout does not become a busy loop; `-1` waits forever.
fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_micros().div_ceil(1000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_wakes_epoll() {
        let epoll = Epoll::new().unwrap();
        let wake = EventFd::new().unwrap();
        epoll.add(wake.as_fd(), 7, Interest::READABLE).unwrap();
        let mut events = Events::with_capacity(4);

        assert_eq!(epoll.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);

        wake.notify().unwrap();
        wake.notify().unwrap();
        assert_eq!(
            epoll
                .wait(&mut events, Some(Duration::from_secs(5)))
                .unwrap(),
            1
        );
        let event = events.iter().next().unwrap();
        assert_eq!(event.token, 7);
        assert!(event.readable && !event.error);

        assert_eq!(wake.drain().unwrap(), 2);
        assert_eq!(wake.drain().unwrap(), 0);
        assert!(!poll_one(wake.as_fd(), Interest::READABLE, Some(Duration::ZERO)).unwrap());

        epoll.delete(wake.as_fd()).unwrap();
        wake.notify().unwrap();
        assert_eq!(epoll.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
    }

    #[test]
    fn timeouts_round_up() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_secs(2))), 2000);
    }
}
