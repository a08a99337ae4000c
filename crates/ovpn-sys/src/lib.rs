//! Everything that touches the operating system: TUN, UDP and TCP
//! transports, netlink and Unix sockets, descriptor passing.
