//! The two system calls the event loop needs besides the TUN device:
//! `poll(2)` to sleep until a file descriptor is readable or a deadline
//! passes, and `signalfd(2)` to receive SIGINT/SIGTERM/SIGUSR1 as readable
//! events on a file descriptor instead of in an asynchronous handler.
//!
//! With a signalfd there is no async-signal-safety to think about: the
//! signals are blocked for the process (`sigprocmask`), so the kernel queues
//! them on the fd and the loop reads them like packets.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A signal the runtime reacts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM: stop gracefully.
    Stop,
    /// SIGUSR1: print statistics.
    Stats,
}

/// SIGINT, SIGTERM and SIGUSR1 delivered through a file descriptor.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Block SIGINT, SIGTERM and SIGUSR1 in this (single-threaded) process
    /// and open a non-blocking signalfd for them.
    pub fn new() -> io::Result<SignalFd> {
        // SAFETY: `sigset_t` is plain data; an all-zero value is a valid
        // argument for sigemptyset, which initialises it.
        let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY: `set` is a valid, exclusively borrowed sigset_t for each call.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGUSR1);
        }
        // SAFETY: `set` is initialised; the old mask is not requested (null).
        if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, core::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: -1 asks for a new fd; `set` is initialised.
        let raw = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd owned by nobody else.
        Ok(SignalFd {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// The next pending signal, if any.
    pub fn read(&mut self) -> io::Result<Option<Signal>> {
        loop {
            // SAFETY: `signalfd_siginfo` is plain data (all-zero is valid).
            let mut info: libc::signalfd_siginfo = unsafe { core::mem::zeroed() };
            let size = core::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: `info` is a writable buffer of exactly `size` bytes.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if n as usize != size {
                return Ok(None);
            }
            return Ok(match info.ssi_signo as i32 {
                libc::SIGINT | libc::SIGTERM => Some(Signal::Stop),
                libc::SIGUSR1 => Some(Signal::Stats),
                _ => continue,
            });
        }
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Wait until one of `fds` is readable or `timeout_ms` passes (-1 = no
/// timeout). Returns, per fd, whether it is readable (or in error, which the
/// following read will report).
pub fn poll_readable<const N: usize>(fds: [RawFd; N], timeout_ms: i32) -> io::Result<[bool; N]> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: `pfds` is a valid array of N pollfd structs, alive for the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok([false; N]);
        }
        return Err(e);
    }
    Ok(pfds.map(|p| p.revents != 0))
}

/// Return free heap memory to the kernel (glibc's `malloc_trim(0)`: the
/// top of every arena and the free pages inside them). glibc keeps freed
/// memory for reuse, so after a burst of load the RSS would otherwise stay
/// near its peak. Elsewhere (musl, other systems) this does nothing.
pub fn malloc_trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only changes which free
    // memory the allocator keeps mapped.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The allocator's own count: (bytes in use by the program, bytes free but
/// kept inside the heap), from glibc's `mallinfo2`. Telling the two apart
/// tells a leak (in use grows) from fragmentation (free grows, and pages
/// holding a little live data cannot be returned). `None` elsewhere.
pub fn heap_usage() -> Option<(usize, usize)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 has no preconditions and returns a plain struct.
        let m = unsafe { libc::mallinfo2() };
        // In use: small blocks plus mmapped large blocks.
        Some((m.uordblks + m.hblkhd, m.fordblks))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}
