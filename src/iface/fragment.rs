//! TEMP stub until the wire helper's reassembler lands.
use crate::time::{Duration, Instant};
use std::net::Ipv4Addr;
#[derive(Debug)]
pub enum FragError { Overlap, TooLarge, NoMemory, Invalid }
pub struct Reassembler;
impl Reassembler {
    pub fn new(_m: usize, _t: Duration) -> Self { Reassembler }
    #[allow(clippy::too_many_arguments)]
    pub fn push(&mut self, _now: Instant, _s: Ipv4Addr, _d: Ipv4Addr, _p: u8, _i: u16, _o: usize, _mf: bool, _pl: &[u8]) -> Result<Option<Vec<u8>>, FragError> { Err(FragError::Invalid) }
    pub fn expire(&mut self, _now: Instant) -> usize { 0 }
    pub fn poll_at(&self) -> Option<Instant> { None }
}
