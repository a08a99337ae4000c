//! `ovpnd`: userspace `ovpn` devices. Not written yet.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("ovpnd: not implemented yet");
    std::process::exit(1);
}
