//! Reading and writing sysctls under `/proc/sys`, in the calling thread's
//! network namespace; the daemon uses it to turn ICMP redirects off on MP
//! devices (`spec/kernel-behaviour.md` §1.5).

use std::fs;
use std::path::PathBuf;

use crate::netdev::validate_name;
use crate::{Error, Result};

/// Writes `value` to the sysctl named by `key` segments, e.g.
/// `["net", "ipv4", "conf", "all", "send_redirects"]`.
///
/// # Errors
///
/// An empty key or a segment that is empty, `.`, `..` or contains `/`; the
/// write failing (`ENOENT` for an unknown key, `EINVAL` for a bad value).
pub fn write(key: &[&str], value: &str) -> Result<()> {
    let path = path_of(key)?;
    fs::write(&path, value).map_err(|e| Error::io("write(/proc/sys)", e))
}

/// Reads the sysctl named by `key` segments, without the trailing newline.
///
/// # Errors
///
/// As for [`write()`].
pub fn read(key: &[&str]) -> Result<String> {
    let path = path_of(key)?;
    let text = fs::read_to_string(&path).map_err(|e| Error::io("read(/proc/sys)", e))?;
    Ok(text.trim_end_matches('\n').to_owned())
}

/// Sets `net.ipv4.conf.<device>.send_redirects` (`device` may be `all`).
///
/// # Errors
///
/// An invalid device name; the write failing (`ENOENT` if the device has no
/// IPv4 configuration).
pub fn set_send_redirects(device: &str, on: bool) -> Result<()> {
    validate_name(device)?;
    write(
        &["net", "ipv4", "conf", device, "send_redirects"],
        if on { "1" } else { "0" },
    )
}

fn path_of(key: &[&str]) -> Result<PathBuf> {
    let bad = key.is_empty()
        || key
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == ".." || s.contains('/'));
    if bad {
        return Err(Error::InvalidArgument {
            call: "sysctl",
            reason: "key segments must be non-empty names without '/'",
        });
    }
    let mut path = PathBuf::from("/proc/sys");
    path.extend(key);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(
            path_of(&["net", "ipv4", "conf", "eth0.100", "send_redirects"]).unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/send_redirects")
        );
        for bad in [&[][..], &["net", ".."], &["net/ipv4"], &[""]] {
            assert!(path_of(bad).is_err(), "{bad:?}");
        }
        assert!(set_send_redirects("../x", false).is_err());
    }

    #[test]
    fn readable_key_is_read() {
        let value = read(&["kernel", "ostype"]).unwrap();
        assert_eq!(value, "Linux");
    }
}
