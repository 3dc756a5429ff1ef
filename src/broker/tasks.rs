//! The `/tasks` view: the current state of every task topic, folded from the
//! well-known lifecycle events (`task_started`, `progress`, `task_completed`,
//! `task_failed`). Pure; the broker feeds it every stored event of those types.

use crate::event::{Fields, format_ts};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One task as `/tasks` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskState {
    pub topic: String,
    /// `running`, `completed` or `failed`.
    pub status: &'static str,
    pub percent: Option<f64>,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub updated_at: String,
    pub ended_at: Option<String>,
    pub duration_seconds: Option<f64>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub last_id: u64,
    #[serde(skip)]
    started_ms: Option<u64>,
}

/// Every task topic seen, by topic.
#[derive(Debug, Default)]
pub struct TaskBoard {
    tasks: BTreeMap<String, TaskState>,
    /// The newest id folded in (events arrive in id order): every lifecycle event up
    /// to it is in the board, none after it.
    last_id: u64,
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl TaskBoard {
    /// Folds one event in; events of other types are ignored.
    pub fn apply<E: Fields + ?Sized>(&mut self, ev: &E) {
        if !crate::event::is_task_type(ev.kind()) {
            return;
        }
        let (id, ts) = (ev.id(), ev.ts());
        let now = format_ts(ts);
        let t = self
            .tasks
            .entry(ev.topic().to_string())
            .or_insert_with(|| TaskState {
                topic: ev.topic().to_string(),
                status: "running",
                percent: None,
                message: None,
                started_at: None,
                updated_at: now.clone(),
                ended_at: None,
                duration_seconds: None,
                exit_code: None,
                error: None,
                last_id: id,
                started_ms: None,
            });
        let d = ev.data();
        let duration = d
            .get("duration_seconds")
            .and_then(Value::as_f64)
            .or_else(|| t.started_ms.map(|s| ts.saturating_sub(s) as f64 / 1000.0));
        match ev.kind() {
            "task_started" => {
                *t = TaskState {
                    topic: t.topic.clone(),
                    status: "running",
                    percent: Some(0.0),
                    message: text(d, "message"),
                    started_at: Some(now.clone()),
                    updated_at: now.clone(),
                    ended_at: None,
                    duration_seconds: None,
                    exit_code: None,
                    error: None,
                    last_id: id,
                    started_ms: Some(ts),
                };
            }
            "progress" => {
                t.status = "running";
                t.ended_at = None;
                if let Some(p) = d.get("percent").and_then(Value::as_f64) {
                    t.percent = Some(p.clamp(0.0, 100.0));
                }
                if let Some(m) = text(d, "message") {
                    t.message = Some(m);
                }
                if t.started_at.is_none() {
                    t.started_at = Some(now.clone());
                    t.started_ms = Some(ts);
                }
            }
            "task_completed" => {
                t.status = "completed";
                t.percent = Some(100.0);
                t.ended_at = Some(now.clone());
                t.duration_seconds = duration;
                t.exit_code = d.get("exit_code").and_then(Value::as_i64).or(t.exit_code);
                if let Some(m) = text(d, "message") {
                    t.message = Some(m);
                }
            }
            "task_failed" => {
                t.status = "failed";
                t.ended_at = Some(now.clone());
                t.duration_seconds = duration;
                t.exit_code = d.get("exit_code").and_then(Value::as_i64);
                t.error = text(d, "error");
                if let Some(m) = text(d, "message") {
                    t.message = Some(m);
                }
            }
            _ => {}
        }
        t.updated_at = now;
        t.last_id = id;
        self.last_id = self.last_id.max(id);
    }

    /// The newest id folded in, 0 before any.
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// All tasks, by topic.
    pub fn list(&self) -> Vec<TaskState> {
        self.tasks.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use serde_json::json;

    fn ev(id: u64, ts: u64, kind: &str, data: Value) -> Event {
        Event {
            id,
            ts,
            topic: "task:build".into(),
            kind: kind.into(),
            source: None,
            key: None,
            data,
        }
    }

    #[test]
    fn lifecycle() {
        let mut b = TaskBoard::default();
        b.apply(&ev(1, 1000, "task_started", json!({})));
        b.apply(&ev(
            2,
            1500,
            "progress",
            json!({"percent": 50, "message": "compiling"}),
        ));
        b.apply(&ev(3, 1600, "log", json!({"line": "x"})));
        assert_eq!(b.last_id(), 2, "a log event is not folded in");
        let t = &b.list()[0];
        assert_eq!(
            (t.status, t.percent, t.message.as_deref(), t.last_id),
            ("running", Some(50.0), Some("compiling"), 2)
        );
        b.apply(&ev(
            4,
            3500,
            "task_failed",
            json!({"error": "boom", "exit_code": 2}),
        ));
        let t = &b.list()[0];
        assert_eq!(t.status, "failed");
        assert_eq!(t.exit_code, Some(2));
        assert_eq!(t.error.as_deref(), Some("boom"));
        assert_eq!(t.duration_seconds, Some(2.5));
        assert!(t.ended_at.is_some());
        // A new run starts clean.
        b.apply(&ev(5, 4000, "task_started", json!({})));
        b.apply(&ev(
            6,
            5000,
            "task_completed",
            json!({"duration_seconds": 1.25}),
        ));
        let t = &b.list()[0];
        assert_eq!(
            (t.status, t.error.as_deref(), t.duration_seconds, t.percent),
            ("completed", None, Some(1.25), Some(100.0))
        );
    }
}
