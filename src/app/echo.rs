//! The TCP echo service (RFC 862): every byte received is sent back.
//!
//! Each connection has a bounded buffer ([`BUFFER`] bytes). The service
//! reads only while the buffer has room and writes from it as the send
//! buffer allows; when the peer sends faster than it reads our echo, the
//! buffer fills, we stop reading, the stack's receive buffer fills, and the
//! advertised window closes: back-pressure through TCP flow control, with
//! bounded memory per connection.
//!
//! Close: when `recv` returns `Ok(0)` (the peer's FIN, i.e. it shut down its
//! write side) we send what is still buffered, then `shutdown` (our FIN), and
//! then `close` the handle, since both directions are done. A peer that
//! half-closes therefore still receives all of its echo before our FIN.

use super::handles::HandleMap;
use super::Service;
use crate::iface::Stack;
use crate::tcp::{ListenerHandle, SocketHandle, TcpError};
use crate::time::Instant;

/// Per-connection echo buffer.
pub const BUFFER: usize = 64 * 1024;

/// Listen backlog.
pub const BACKLOG: usize = 1024;

#[derive(Debug)]
struct Conn {
    buf: Box<[u8]>,
    /// `buf[sent..len]` is received and not yet accepted by `send`.
    sent: usize,
    len: usize,
    /// The peer's FIN was read.
    eof: bool,
    /// Our FIN was queued (`shutdown`).
    fin_sent: bool,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            buf: vec![0; BUFFER].into_boxed_slice(),
            sent: 0,
            len: 0,
            eof: false,
            fin_sent: false,
        }
    }
    fn pending(&self) -> usize {
        self.len - self.sent
    }
}

/// What to do with a connection after servicing it.
enum Next {
    Keep,
    /// Done: release the handle gracefully.
    Close,
    /// Failed: release with RST (if not already reset).
    Abort,
}

/// The echo service.
#[derive(Debug)]
pub struct Echo {
    port: u16,
    conns: HandleMap<Conn>,
    closing: bool,
}

impl Echo {
    pub fn new(port: u16) -> Echo {
        Echo {
            port,
            conns: Default::default(),
            closing: false,
        }
    }

    /// Move as many bytes as possible: send buffered bytes, read more, repeat.
    fn service(stack: &mut Stack, h: SocketHandle, c: &mut Conn, closing: bool) -> Next {
        loop {
            let mut progress = false;
            // 1. Write what is buffered.
            while c.pending() > 0 && !c.fin_sent {
                match stack.send(h, &c.buf[c.sent..c.len]) {
                    Ok(0) | Err(TcpError::WouldBlock) => break,
                    Ok(n) => {
                        c.sent += n;
                        progress = true;
                    }
                    Err(_) => return Next::Abort,
                }
            }
            if c.sent == c.len {
                c.sent = 0;
                c.len = 0;
            }
            // 2. Read while there is room (after our FIN: read and discard).
            if !c.eof {
                if c.fin_sent {
                    c.sent = 0;
                    c.len = 0;
                }
                if c.sent > 0 && c.len == c.buf.len() {
                    c.buf.copy_within(c.sent..c.len, 0);
                    c.len -= c.sent;
                    c.sent = 0;
                }
                if c.len < c.buf.len() {
                    match stack.recv(h, &mut c.buf[c.len..]) {
                        Ok(0) => {
                            c.eof = true;
                            progress = true;
                        }
                        Ok(n) => {
                            c.len += n;
                            progress = true;
                        }
                        Err(TcpError::WouldBlock) => {}
                        Err(_) => return Next::Abort,
                    }
                }
            }
            // 3. Our FIN once the peer is done (or we are stopping) and all is echoed.
            if (c.eof || closing) && c.pending() == 0 && !c.fin_sent {
                match stack.shutdown(h) {
                    Ok(()) => c.fin_sent = true,
                    Err(_) => return Next::Abort,
                }
            }
            if c.eof && c.fin_sent {
                return Next::Close;
            }
            if stack.readiness(h).closed {
                return Next::Close;
            }
            if !progress {
                return Next::Keep;
            }
        }
    }

    fn visit(&mut self, stack: &mut Stack, h: SocketHandle) {
        let Some(c) = self.conns.get_mut(&h) else {
            return;
        };
        match Echo::service(stack, h, c, self.closing) {
            Next::Keep => {}
            Next::Close => {
                log::debug!("echo {h:?}: done, closing");
                self.conns.remove(&h);
                stack.close(h);
            }
            Next::Abort => {
                log::debug!(
                    "echo {h:?}: error {:?}, releasing",
                    stack.readiness(h).error
                );
                self.conns.remove(&h);
                stack.abort(h);
            }
        }
    }
}

impl Service for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn start(&mut self, stack: &mut Stack) -> Result<Vec<ListenerHandle>, TcpError> {
        Ok(vec![stack.listen(self.port, BACKLOG)?])
    }

    fn on_accept(&mut self, _now: Instant, stack: &mut Stack, h: SocketHandle) {
        self.conns.insert(h, Conn::new());
        self.visit(stack, h);
    }

    fn owns(&self, h: SocketHandle) -> bool {
        self.conns.contains_key(&h)
    }

    fn on_socket(&mut self, _now: Instant, stack: &mut Stack, h: SocketHandle) {
        self.visit(stack, h);
    }

    fn shutdown(&mut self, _now: Instant, stack: &mut Stack) {
        self.closing = true;
        let handles: Vec<_> = self.conns.keys().collect();
        for h in handles {
            self.visit(stack, h);
        }
    }

    fn abort_all(&mut self, stack: &mut Stack) {
        for (h, _) in self.conns.drain() {
            stack.abort(h);
        }
    }

    fn connections(&self) -> usize {
        self.conns.len()
    }

    fn trim_memory(&mut self) -> usize {
        self.conns.shrink()
    }
}
