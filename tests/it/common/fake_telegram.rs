//! A fake Telegram Bot API on 127.0.0.1 (axum): it hands out queued updates through
//! `getUpdates`, answers the methods jkmon uses, records every call, and also takes webhook
//! POSTs on `/hook`. Tests wait on the recorded calls (a channel), never on sleeps.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;

#[derive(Default)]
struct Inner {
    updates: VecDeque<Value>,
    next_update: i64,
    next_message: i64,
    delay: Duration,
    /// Another program polls this token: `getUpdates` answers 409.
    conflict: bool,
    /// Every `editMessageText` answers 400 "message is not modified", as Telegram does for
    /// an edit that changes nothing.
    not_modified: bool,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    calls: mpsc::UnboundedSender<(String, Value)>,
}

pub struct FakeTelegram {
    pub addr: SocketAddr,
    shared: Shared,
    calls: mpsc::UnboundedReceiver<(String, Value)>,
    /// Every call so far.
    pub seen: Vec<(String, Value)>,
    /// Calls no `wait` has matched yet.
    unmatched: Vec<(String, Value)>,
}

impl FakeTelegram {
    /// Starts on a free loopback port; every answer comes after `delay`.
    pub async fn start(delay: Duration) -> FakeTelegram {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                delay,
                next_update: 1000,
                next_message: 1,
                ..Inner::default()
            })),
            calls: tx,
        };
        let app = Router::new()
            .route("/hook", post(hook))
            .route("/{bot}/{method}", post(method))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeTelegram {
            addr,
            shared,
            calls: rx,
            seen: Vec::new(),
            unmatched: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on every `editMessageText` answers that the message is not modified (`on`),
    /// or edits work again.
    pub fn not_modified(&self, on: bool) {
        self.shared.inner.lock().unwrap().not_modified = on;
    }

    /// From now on `getUpdates` answers 409 Conflict, as when a second program polls the same
    /// token (`on`), or works again.
    pub fn conflict(&self, on: bool) {
        self.shared.inner.lock().unwrap().conflict = on;
    }

    /// Queues a text message from `chat`.
    pub fn message(&self, chat: i64, text: &str) {
        let mut inner = self.shared.inner.lock().unwrap();
        let id = inner.next_update;
        inner.next_update += 1;
        let entities = if text.starts_with('/') {
            json!([{"type": "bot_command", "offset": 0, "length": text.split(' ').next().unwrap().len()}])
        } else {
            json!([])
        };
        inner.updates.push_back(json!({
            "update_id": id,
            "message": {
                "message_id": id, "date": 1_767_225_600,
                "chat": {"id": chat, "type": "private", "first_name": "Owner"},
                "from": {"id": chat, "is_bot": false, "first_name": "Owner"},
                "text": text, "entities": entities,
            }
        }));
    }

    /// Queues a press of an inline button with `data` under message `message_id` in `chat`.
    pub fn press(&self, chat: i64, message_id: i64, data: &str) {
        let mut inner = self.shared.inner.lock().unwrap();
        let id = inner.next_update;
        inner.next_update += 1;
        inner.updates.push_back(json!({
            "update_id": id,
            "callback_query": {
                "id": format!("cb{id}"),
                "from": {"id": chat, "is_bot": false, "first_name": "Owner"},
                "chat_instance": "1",
                "data": data,
                "message": {
                    "message_id": message_id, "date": 1_767_225_600,
                    "chat": {"id": chat, "type": "private", "first_name": "Owner"},
                    "from": {"id": 1, "is_bot": true, "first_name": "jkmon", "username": "jkmon_bot"},
                    "text": "old",
                }
            }
        }));
    }

    /// The next call of `method` (case-insensitive; "hook" for webhook POSTs) that satisfies
    /// `pred`, waiting at most `limit`.
    pub async fn wait(
        &mut self,
        method: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let matches = |m: &str, b: &Value| m.eq_ignore_ascii_case(method) && pred(b);
        if let Some(i) = self.unmatched.iter().position(|(m, b)| matches(m, b)) {
            return self.unmatched.remove(i).1;
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.calls.recv()).await {
                Ok(Some((m, body))) => {
                    self.seen.push((m.clone(), body.clone()));
                    if matches(&m, &body) {
                        return body;
                    }
                    self.unmatched.push((m, body));
                }
                _ => panic!(
                    "no {method} within {limit:?}; calls seen: {:?}",
                    self.seen.iter().map(|(m, _)| m).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Every call that arrived so far (without waiting).
    pub fn drain(&mut self) -> Vec<(String, Value)> {
        while let Ok(c) = self.calls.try_recv() {
            self.seen.push(c.clone());
            self.unmatched.push(c);
        }
        self.seen.clone()
    }
}

async fn hook(State(s): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    let _ = s.calls.send(("hook".into(), body));
    Json(json!({"ok": true}))
}

async fn method(
    State(s): State<Shared>,
    Path((_bot, method)): Path<(String, String)>,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let (delay, conflict, not_modified) = {
        let inner = s.inner.lock().unwrap();
        (inner.delay, inner.conflict, inner.not_modified)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let m = method.to_ascii_lowercase();
    if m == "getupdates" && conflict {
        let _ = s.calls.send(("getupdates-conflict".into(), body));
        tokio::time::sleep(Duration::from_millis(50)).await;
        return (
            axum::http::StatusCode::CONFLICT,
            Json(json!({"ok": false, "error_code": 409,
                "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"})),
        )
            .into_response();
    }
    if m == "editmessagetext" && not_modified {
        let _ = s.calls.send(("editmessagetext-not-modified".into(), body));
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error_code": 400,
                "description": "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"})),
        )
            .into_response();
    }
    let result = match m.as_str() {
        "getme" => json!({
            "id": 1, "is_bot": true, "first_name": "jkmon", "username": "jkmon_bot",
            "can_join_groups": false, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "has_main_web_app": false,
            "can_connect_to_business": false,
        }),
        "getwebhookinfo" => {
            json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0})
        }
        "deletewebhook" | "answercallbackquery" | "setmycommands" => json!(true),
        "getupdates" => {
            let offset = body.get("offset").and_then(Value::as_i64).unwrap_or(0);
            let batch: Vec<Value> = {
                let mut inner = s.inner.lock().unwrap();
                inner
                    .updates
                    .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                inner.updates.iter().cloned().collect()
            };
            if batch.is_empty() {
                // a short long-poll, so the bot does not spin
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            json!(batch)
        }
        "sendmessage" | "editmessagetext" => {
            let id = {
                let mut inner = s.inner.lock().unwrap();
                inner.next_message += 1;
                inner.next_message
            };
            let chat = body.get("chat_id").cloned().unwrap_or(json!(0));
            json!({
                "message_id": body.get("message_id").cloned().unwrap_or(json!(id)),
                "date": 1_767_225_600,
                "chat": {"id": chat, "type": "private", "first_name": "Owner"},
                "from": {"id": 1, "is_bot": true, "first_name": "jkmon", "username": "jkmon_bot"},
                "text": body.get("text").cloned().unwrap_or(json!("")),
            })
        }
        _ => json!(true),
    };
    if m != "getupdates" {
        let _ = s.calls.send((m, body));
    }
    Json(json!({"ok": true, "result": result})).into_response()
}
