//! Shutdown signals as a readable descriptor (`signalfd`), so the daemon's
//! control loop waits for SIGTERM/SIGINT next to its sockets instead of in
//! an async-signal handler.

use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::sys::{cvt, cvt_size, owned, retry};
use crate::{Error, Result};

/// A `signalfd` for a set of signals, which are blocked in the creating
/// thread.
///
/// Blocking applies to the calling thread and to threads it spawns
/// afterwards. Create it on the main thread before starting workers, or a
/// worker that does not block the signal may still receive it with its
/// default action (for SIGTERM: the whole process ends).
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Blocks `signals` in the calling thread and opens a non-blocking,
    /// close-on-exec signalfd for them.
    ///
    /// # Errors
    ///
    /// An invalid signal number; `pthread_sigmask` or `signalfd` failing.
    pub fn new(signals: &[libc::c_int]) -> Result<Self> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t.
        unsafe { libc::sigemptyset(&raw mut set) };
        for &signal in signals {
            // SAFETY: `set` is a valid, initialised sigset_t.
            let ret = unsafe { libc::sigaddset(&raw mut set, signal) };
            if ret < 0 {
                return Err(Error::InvalidArgument {
                    call: "sigaddset",
                    reason: "invalid signal number",
                });
            }
        }
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let ret =
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) };
        if ret != 0 {
            return Err(Error::io(
                "pthread_sigmask",
                std::io::Error::from_raw_os_error(ret),
            ));
        }
        // SAFETY: -1 asks for a new descriptor; `set` is initialised.
        let ret =
            unsafe { libc::signalfd(-1, &raw const set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        Ok(Self {
            fd: owned("signalfd", ret)?,
        })
    }

    /// SIGTERM and SIGINT, the signals that should stop the daemon.
    ///
    /// # Errors
    ///
    /// As for [`SignalFd::new`].
    pub fn termination() -> Result<Self> {
        Self::new(&[libc::SIGTERM, libc::SIGINT])
    }

    /// Takes one pending signal: its number, or `None` if none is pending.
    ///
    /// # Errors
    ///
    /// `read` failing otherwise.
    pub fn take(&self) -> Result<Option<libc::c_int>> {
        // SAFETY: signalfd_siginfo is plain integers; all-zero is valid.
        let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
        let size = mem::size_of::<libc::signalfd_siginfo>();
        let result = retry(|| {
            // SAFETY: the kernel writes at most `size` bytes into `info`.
            let ret = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut info).cast(), size) };
            cvt_size("read(signalfd)", ret)
        });
        match result {
            Ok(n) if n == size => Ok(libc::c_int::try_from(info.ssi_signo).ok()),
            Ok(_) => Err(Error::InvalidArgument {
                call: "read(signalfd)",
                reason: "short read",
            }),
            Err(err) if err.is_would_block() => Ok(None),
            Err(err) => Err(err),
        }
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sends `signal` to the calling thread only (`raise`), e.g. to test a
/// [`SignalFd`] without touching other threads.
///
/// # Errors
///
/// `raise` failing (an invalid signal number).
pub fn raise(signal: libc::c_int) -> Result<()> {
    // SAFETY: raise sends a signal to the calling thread; the caller decides
    // what that signal does (blocked ones just become pending).
    let ret = unsafe { libc::raise(signal) };
    cvt("raise", ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::{Interest, poll_one};
    use std::time::Duration;

    #[test]
    fn blocked_signal_is_read_from_the_descriptor() {
        // On its own thread, so the blocked mask stays there.
        std::thread::spawn(|| {
            let fd = SignalFd::new(&[libc::SIGUSR2]).unwrap();
            assert_eq!(fd.take().unwrap(), None);
            raise(libc::SIGUSR2).unwrap();
            assert!(
                poll_one(fd.as_fd(), Interest::READABLE, Some(Duration::from_secs(5))).unwrap()
            );
            assert_eq!(fd.take().unwrap(), Some(libc::SIGUSR2));
            assert_eq!(fd.take().unwrap(), None);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn invalid_signal_is_refused() {
        std::thread::spawn(|| {
            assert!(SignalFd::new(&[10_000]).is_err());
        })
        .join()
        .unwrap();
    }
}
