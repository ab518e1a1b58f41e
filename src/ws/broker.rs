//! Chat rooms for `/ws/chat/<room>`: who is in which room, and what to send
//! to whom. Pure bookkeeping, no I/O: the glue owns the connections and
//! delivers the returned messages (each with [`WsConnection::send`]).
//!
//! * A room is created by its first [`Broker::join`] and freed by its last
//!   [`Broker::leave`].
//! * Joins and leaves are announced to everybody in the room (the joiner
//!   included) as small JSON text messages:
//!   `{"type":"join","room":"r","id":3,"count":2}`.
//! * [`Broker::publish`] relays a message verbatim to all *other* members.
//!
//! [`WsConnection::send`]: super::WsConnection::send

use super::Message;
use std::collections::{BTreeMap, BTreeSet};

/// The glue's identifier for a connection.
pub type ConnId = u64;

/// Longest room name.
pub const MAX_ROOM_NAME: usize = 64;

/// A room name is 1 to 64 characters from `[A-Za-z0-9_.-]`, not starting
/// with a dot. The glue answers 404 at handshake time otherwise.
pub fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROOM_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Rooms and their members.
#[derive(Debug, Default)]
pub struct Broker {
    rooms: BTreeMap<String, BTreeSet<ConnId>>,
}

fn notice(kind: &str, room: &str, id: ConnId, count: usize) -> Message {
    // Room names are validated ([`valid_room_name`]) so they need no JSON
    // escaping.
    Message::Text(format!(
        "{{\"type\":\"{kind}\",\"room\":\"{room}\",\"id\":{id},\"count\":{count}}}"
    ))
}

impl Broker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `conn` to `room` (created if needed). Returns the join notice
    /// for every member, the new one included. Joining twice is a no-op
    /// (no notices).
    pub fn join(&mut self, room: &str, conn: ConnId) -> Vec<(ConnId, Message)> {
        let members = self.rooms.entry(room.to_string()).or_default();
        if !members.insert(conn) {
            return Vec::new();
        }
        let n = notice("join", room, conn, members.len());
        members.iter().map(|&m| (m, n.clone())).collect()
    }

    /// Remove `conn` from `room`; the room is freed when empty. Returns the
    /// leave notice for each remaining member.
    pub fn leave(&mut self, room: &str, conn: ConnId) -> Vec<(ConnId, Message)> {
        let Some(members) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        if !members.remove(&conn) {
            return Vec::new();
        }
        if members.is_empty() {
            self.rooms.remove(room);
            return Vec::new();
        }
        let n = notice("leave", room, conn, members.len());
        members.iter().map(|&m| (m, n.clone())).collect()
    }

    /// Relay `msg` verbatim to everybody in `room` except `from`. Empty if
    /// `from` is not a member.
    pub fn publish(&self, room: &str, from: ConnId, msg: &Message) -> Vec<(ConnId, Message)> {
        self.recipients(room, from)
            .into_iter()
            .map(|c| (c, msg.clone()))
            .collect()
    }

    /// Everybody in `room` except `from`. Empty if `from` is not a member.
    pub fn recipients(&self, room: &str, from: ConnId) -> Vec<ConnId> {
        match self.rooms.get(room) {
            Some(m) if m.contains(&from) => m.iter().copied().filter(|&c| c != from).collect(),
            _ => Vec::new(),
        }
    }

    /// Members of a room (sorted).
    pub fn members(&self, room: &str) -> Vec<ConnId> {
        self.rooms
            .get(room)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Number of live rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(valid_room_name("lobby"));
        assert!(valid_room_name("a-b_c.1"));
        assert!(!valid_room_name(""));
        assert!(!valid_room_name(".."));
        assert!(!valid_room_name("a/b"));
        assert!(!valid_room_name("caf\u{e9}"));
        assert!(!valid_room_name(&"x".repeat(65)));
        assert!(valid_room_name(&"x".repeat(64)));
    }

    #[test]
    fn join_publish_leave() {
        let mut b = Broker::new();
        let n = b.join("r", 1);
        assert_eq!(
            n,
            vec![(
                1,
                Message::Text(r#"{"type":"join","room":"r","id":1,"count":1}"#.into())
            )]
        );
        let n = b.join("r", 3);
        assert_eq!(n.len(), 2);
        assert!(n
            .iter()
            .all(|(_, m)| *m
                == Message::Text(r#"{"type":"join","room":"r","id":3,"count":2}"#.into())));
        assert!(b.join("r", 3).is_empty());
        b.join("other", 7);
        let hi = Message::Text("hi".into());
        assert_eq!(b.publish("r", 1, &hi), vec![(3, hi.clone())]);
        assert_eq!(b.recipients("r", 7), Vec::<ConnId>::new());
        let n = b.leave("r", 1);
        assert_eq!(
            n,
            vec![(
                3,
                Message::Text(r#"{"type":"leave","room":"r","id":1,"count":1}"#.into())
            )]
        );
        assert_eq!(b.room_count(), 2);
        assert!(b.leave("r", 3).is_empty());
        assert_eq!(b.room_count(), 1);
        assert!(b.members("r").is_empty());
    }
}
