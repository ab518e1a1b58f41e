// The ustack demo page: a chat room and a live view of the stack's counters,
// both over WebSocket connections to ustack itself (no libraries, no CDN).
//
//   /ws/chat/<room>  sub-protocol "chat.v1". The server relays each message
//                    verbatim to the OTHER members of the room and announces
//                    joins and leaves to everybody:
//                    {"type":"join","room":"lobby","id":3,"count":2}
//                    This page sends {"type":"msg","name":"...","text":"..."};
//                    anything else it receives is shown as plain text.
//   /ws/stats        the /api/stats JSON, pushed by the server once a second.
//
// URL parameters (handy for scripted tests):
//   ?room=NAME   join that room at once          &name=NICK  name to send
//   &send=TEXT   send TEXT once joined (after another member is present,
//                or after 3 s alone)
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;

// ---------------------------------------------------------------- chat

let chat = null;     // the open WebSocket, if any
let myId = null;     // our id in the room (from our own join notice)
let pendingSend = params.get("send");

function addLine(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;          // textContent: received text is never HTML
  const list = $("messages");
  list.appendChild(li);
  list.scrollTop = list.scrollHeight;
}

function setChatStatus(text, connected) {
  $("chat-status").textContent = text;
  $("text").disabled = !connected;
  $("send").disabled = !connected;
}

function myName() {
  return params.get("name") || (myId === null ? "web" : "web-" + myId);
}

function sendText(text) {
  if (!chat || chat.readyState !== WebSocket.OPEN || text === "") return;
  chat.send(JSON.stringify({ type: "msg", name: myName(), text: text }));
  addLine("mine", myName() + " (you): " + text);
}

function flushPendingSend() {
  if (pendingSend !== null) {
    const t = pendingSend;
    pendingSend = null;
    sendText(t);
  }
}

function onChatMessage(data) {
  if (typeof data !== "string") {
    addLine("msg", "[binary message, " + data.size + " bytes]");
    return;
  }
  let m = null;
  try { m = JSON.parse(data); } catch (e) { /* plain text */ }
  if (m && (m.type === "join" || m.type === "leave")) {
    if (m.type === "join" && myId === null) {
      myId = m.id;    // the first notice we get is our own join
      addLine("notice", "You joined room " + m.room + " as #" + m.id + " (" + m.count + " here)");
    } else {
      addLine("notice", "#" + m.id + (m.type === "join" ? " joined" : " left") + " (" + m.count + " here)");
    }
    if (m.count > 1) flushPendingSend();
  } else if (m && m.type === "msg" && typeof m.text === "string") {
    addLine("msg", String(m.name || "?") + ": " + m.text);
  } else {
    addLine("msg", data);
  }
}

function join(room) {
  if (chat) chat.close(1000, "changing room");
  myId = null;
  $("messages").replaceChildren();
  setChatStatus("connecting to " + room + "…", false);
  const ws = new WebSocket(wsBase + "/ws/chat/" + encodeURIComponent(room), "chat.v1");
  chat = ws;
  ws.onopen = () => {
    if (chat !== ws) return;
    setChatStatus("in room " + room + " (protocol " + (ws.protocol || "none") + ")", true);
    // Alone in the room? Send a scripted message anyway after a while.
    if (pendingSend !== null) setTimeout(flushPendingSend, 3000);
  };
  ws.onmessage = (ev) => { if (chat === ws) onChatMessage(ev.data); };
  ws.onclose = (ev) => {
    if (chat !== ws) return;
    chat = null;
    setChatStatus("disconnected (code " + ev.code + ")", false);
  };
}

$("join-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  join($("room").value.trim() || "lobby");
});

$("send-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sendText($("text").value);
  $("text").value = "";
  $("text").focus();
});

// ---------------------------------------------------------------- live counters

function showStats(s) {
  const tcp = s.tcp || {};
  $("s-packets-in").textContent = s.packets_in;
  $("s-packets-out").textContent = s.packets_out;
  $("s-connections").textContent = tcp.connections_live;
  $("s-retransmissions").textContent = tcp.retransmissions;
  $("s-drops").textContent = s.drops_total;
  $("s-uptime").textContent = (s.uptime_ms / 1000).toFixed(0) + " s";
}

function watchStats(delay) {
  const ws = new WebSocket(wsBase + "/ws/stats");
  ws.onopen = () => { $("stats-status").textContent = "live (pushed by the server every second)"; delay = 1000; };
  ws.onmessage = (ev) => {
    try { showStats(JSON.parse(ev.data)); } catch (e) { /* ignore a bad push */ }
  };
  ws.onclose = () => {
    $("stats-status").textContent = "disconnected; retrying…";
    setTimeout(() => watchStats(Math.min(delay * 2, 30000)), delay);
  };
}

// ---------------------------------------------------------------- start

if (params.get("room")) $("room").value = params.get("room");
watchStats(1000);
if (params.get("room")) join($("room").value);
