//! A listening socket handed over by a service manager (systemd socket activation, the
//! `sd_listen_fds` protocol): `LISTEN_PID` names this process and `LISTEN_FDS` counts the
//! sockets passed from file descriptor 3 on. The manager keeps the socket open across
//! restarts and upgrades, so connections that arrive while no process accepts wait in its
//! queue instead of being refused or reset.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};

/// `SD_LISTEN_FDS_START`.
const FIRST_FD: RawFd = 3;

/// The API socket passed by a service manager (the first of `LISTEN_FDS`), or none when none
/// was passed to this process. Only TCP sockets that listen are taken.
pub fn inherited_listener() -> io::Result<Option<std::net::TcpListener>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us {
        return Ok(None);
    }
    let count = std::env::var("LISTEN_FDS").unwrap_or_default();
    let count: RawFd = count.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LISTEN_FDS: {count:?} is not a number"),
        )
    })?;
    if count < 1 {
        return Ok(None);
    }
    for fd in FIRST_FD..FIRST_FD + count {
        // As sd_listen_fds does: the sockets are this process's, not its children's.
        // SAFETY: fcntl on a descriptor number; an invalid one only returns an error.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    // SAFETY: the service manager passed descriptor 3 to this process (LISTEN_PID is ours)
    // and nothing else in the process owns it. Until it is known to be a listening TCP
    // socket it is not closed: it stays whoever's it is.
    let socket = ManuallyDrop::new(unsafe { socket2::Socket::from_raw_fd(FIRST_FD) });
    let not_usable = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LISTEN_FDS: descriptor {FIRST_FD} {why}"),
        )
    };
    let is_inet = socket
        .local_addr()
        .map_err(|e| not_usable(&format!("is not a socket: {e}")))?
        .as_socket()
        .is_some();
    if !is_inet || socket.r#type()? != socket2::Type::STREAM {
        return Err(not_usable("is not a TCP socket"));
    }
    if !socket.is_listener()? {
        return Err(not_usable("is not listening"));
    }
    let socket = ManuallyDrop::into_inner(socket);
    socket.set_nonblocking(true)?;
    Ok(Some(socket.into()))
}
