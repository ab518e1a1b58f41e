//! Applications on top of the TCP socket API: services and their dispatch.
//!
//! A [`Service`] is one application protocol on one or more ports (echo,
//! HTTP, WebSocket). The stack has a single event queue for all sockets
//! (`Stack::poll_event`), so the [`App`] owns the dispatch:
//!
//! * **listeners**: a service opens its listeners in [`Service::start`]; the
//!   `App` records which service owns each [`ListenerHandle`]. On
//!   `Event::Incoming(l)` the `App` accepts every ready connection and hands
//!   each new [`SocketHandle`] to the owner with [`Service::on_accept`].
//! * **sockets**: each service keeps its own table of the handles it
//!   accepted. On `Event::Socket(h)` the `App` asks the services in turn
//!   ([`Service::owns`]) and calls [`Service::on_socket`] on the owner. A
//!   service that releases a handle (`close`/`abort`) drops it from its own
//!   table, so there is no second table in the `App` that could go stale.
//!   Events for released handles are ignored (handles carry a generation,
//!   so a reused slot never matches an old handle).
//!
//! Services reach TCP only through the public socket API of
//! [`Stack`]; they never see packets, devices or clocks.

pub mod echo;
pub mod handles;
pub mod ladder;
pub mod stats;
pub mod web;

use crate::iface::Stack;
use crate::tcp::{Event, ListenerHandle, SocketHandle, TcpError};
use crate::time::{min_deadline, Instant};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

/// One application protocol.
///
/// Calling order, per event-loop turn: `on_accept` / `on_socket` for each
/// routed event, then `poll` once. `shutdown` once when the process is asked
/// to stop, `abort_all` when the grace period is over.
pub trait Service {
    /// A short name for logs ("echo", "http").
    fn name(&self) -> &'static str;

    /// Open the service's listeners.
    fn start(&mut self, stack: &mut Stack) -> Result<Vec<ListenerHandle>, TcpError>;

    /// A connection was accepted on one of this service's listeners. The
    /// service now owns `h` (and should look at it at once: data may
    /// already be waiting).
    fn on_accept(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle);

    /// Whether `h` is one of this service's live handles.
    fn owns(&self, h: SocketHandle) -> bool;

    /// The readiness of `h` (owned by this service) may have changed.
    fn on_socket(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle);

    /// Called once per loop turn after the events: timers, housekeeping.
    fn poll(&mut self, _now: Instant, _stack: &mut Stack) {}

    /// When `poll` must next be called even without events.
    fn poll_at(&self) -> Option<Instant> {
        None
    }

    /// The process is stopping: close every connection gracefully (FIN)
    /// and accept no more.
    fn shutdown(&mut self, _now: Instant, _stack: &mut Stack) {}

    /// The grace period is over: abort (RST) and release every handle still held.
    fn abort_all(&mut self, stack: &mut Stack);

    /// How many handles the service still holds.
    fn connections(&self) -> usize;

    /// Shrink tables that are mostly empty (called when the process has
    /// been idle for a while); returns the bytes of capacity released.
    fn trim_memory(&mut self) -> usize {
        0
    }

    /// Entries in the service's timer queue, stale ones included (stats).
    fn timer_entries(&self) -> usize {
        0
    }
}

/// Which services to run. The runtime fills it from the command line.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// TCP echo port (0 = off).
    pub echo_port: u16,
    /// HTTP port (0 = off). Used by the HTTP service.
    pub http_port: u16,
    /// Directory of static files served over HTTP.
    pub www: Option<PathBuf>,
    /// Counters from the device chain (fault injection), shown in `/api/stats`.
    pub device_stats: Rc<RefCell<stats::DeviceStats>>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            echo_port: 7,
            http_port: 80,
            www: None,
            device_stats: Rc::default(),
        }
    }
}

/// Why the services could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("service {service}: cannot listen: {source}")]
    Listen {
        service: &'static str,
        source: TcpError,
    },
}

/// All services, and the routing of stack events to them.
pub struct App {
    services: Vec<Box<dyn Service>>,
    listeners: crate::hash::FastMap<ListenerHandle, usize>,
    shutting_down: bool,
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    /// An app with no services.
    pub fn new() -> App {
        App {
            services: Vec::new(),
            listeners: Default::default(),
            shutting_down: false,
        }
    }

    /// The services selected by `config`, started on `stack`.
    pub fn build(config: &AppConfig, stack: &mut Stack) -> Result<App, AppError> {
        let mut app = App::new();
        if config.echo_port != 0 {
            app.add(stack, Box::new(echo::Echo::new(config.echo_port)))?;
        }
        if config.http_port != 0 {
            let web = web::WebConfig {
                port: config.http_port,
                www: config.www.clone(),
                // The stack's limit (`--max-connections`) is the service's
                // too: a lower one would refuse (RST) connections the
                // stack had room for.
                max_connections: stack.config().max_connections,
                ..Default::default()
            };
            app.add(
                stack,
                Box::new(web::Web::new(web, config.device_stats.clone())),
            )?;
        }
        Ok(app)
    }

    /// Start `service` and route its listeners to it.
    pub fn add(
        &mut self,
        stack: &mut Stack,
        mut service: Box<dyn Service>,
    ) -> Result<(), AppError> {
        let listeners = service.start(stack).map_err(|source| AppError::Listen {
            service: service.name(),
            source,
        })?;
        let idx = self.services.len();
        for l in listeners {
            self.listeners.insert(l, idx);
        }
        self.services.push(service);
        Ok(())
    }

    /// Names of the running services.
    pub fn service_names(&self) -> Vec<&'static str> {
        self.services.iter().map(|s| s.name()).collect()
    }

    /// Drain the stack's events, route each to its service, then poll every service.
    pub fn poll(&mut self, now: Instant, stack: &mut Stack) {
        while let Some(ev) = stack.poll_event() {
            match ev {
                Event::Incoming(l) => {
                    let owner = self.listeners.get(&l).copied();
                    while let Some(h) = stack.accept(l) {
                        match owner {
                            Some(i) if !self.shutting_down => {
                                self.services[i].on_accept(now, stack, h)
                            }
                            // Stopping, or a listener nobody owns: refuse with RST.
                            _ => stack.abort(h),
                        }
                    }
                }
                Event::Socket(h) => {
                    if let Some(s) = self.services.iter_mut().find(|s| s.owns(h)) {
                        s.on_socket(now, stack, h);
                    }
                    // else: an event for a handle already released; nothing to do.
                }
            }
        }
        for s in &mut self.services {
            s.poll(now, stack);
        }
    }

    /// The earliest deadline of any service.
    pub fn poll_at(&self) -> Option<Instant> {
        self.services
            .iter()
            .fold(None, |acc, s| min_deadline(acc, s.poll_at()))
    }

    /// Begin a graceful stop: every service closes its connections; new
    /// connections are refused from now on.
    pub fn shutdown(&mut self, now: Instant, stack: &mut Stack) {
        self.shutting_down = true;
        for s in &mut self.services {
            s.shutdown(now, stack);
        }
    }

    /// Abort (RST) whatever is still open.
    pub fn abort_all(&mut self, stack: &mut Stack) {
        for s in &mut self.services {
            s.abort_all(stack);
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Handles still held by all services.
    pub fn connections(&self) -> usize {
        self.services.iter().map(|s| s.connections()).sum()
    }

    /// Timer queue entries of all services (stale ones included).
    pub fn timer_entries(&self) -> usize {
        self.services.iter().map(|s| s.timer_entries()).sum()
    }

    /// Shrink the services' mostly empty tables ([`Service::trim_memory`]);
    /// returns the bytes of capacity released.
    pub fn trim_memory(&mut self) -> usize {
        self.services.iter_mut().map(|s| s.trim_memory()).sum()
    }
}

/// Shrink a hash map that is at most a quarter full; returns the bytes of
/// capacity released (approximately: keys, values and a control byte).
pub(crate) fn shrink_map<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(
    m: &mut std::collections::HashMap<K, V, S>,
) -> usize {
    let cap = m.capacity();
    if m.len() >= cap / 4 {
        return 0;
    }
    m.shrink_to_fit();
    (cap - m.capacity()) * (std::mem::size_of::<(K, V)>() + 1)
}
