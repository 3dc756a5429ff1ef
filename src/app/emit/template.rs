//! The invocation's event: topic, type, source and the data of `--data` and the
//! KEY=VALUE / KEY:=JSON fields, which `--lines` merges into each line's data.

use super::*;

/// What every event of this invocation shares: topic, type, source, base data.
pub(super) struct Template {
    pub(super) topic: String,
    pub(super) kind: Option<String>,
    pub(super) source: Option<String>,
    pub(super) data: Value,
    /// KEY=VALUE / KEY:=JSON fields, merged into each event's data.
    pub(super) fields: Map<String, Value>,
}

impl Template {
    pub(super) fn from_args(args: &EmitArgs) -> Result<Template, Exit> {
        let topic = args.topic.clone().unwrap_or_default();
        if args.events && (args.topic.is_some() || !args.rest.is_empty()) {
            return Err(Exit::usage(
                "--events takes no TOPIC, TYPE or fields: each stdin line names its own topic",
            ));
        }
        if !args.events {
            crate::event::validate_topic(&topic).map_err(|e| Exit::usage(e.to_string()))?;
        }
        let mut rest = args.rest.as_slice();
        let mut kind = None;
        if let Some(first) = rest.first()
            && !first.contains('=')
        {
            crate::event::validate_type(first).map_err(|e| Exit::usage(e.to_string()))?;
            kind = Some(first.clone());
            rest = &rest[1..];
        }
        let mut fields = Map::new();
        for f in rest {
            let (k, v) = parse_field(f)?;
            fields.insert(k, v);
        }
        let data = match &args.data {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                Exit::usage(format!(
                    "--data is not valid JSON ({e}): give e.g. '{{\"a\":1}}'"
                ))
            })?,
            None => Value::Null,
        };
        if !fields.is_empty() && !matches!(data, Value::Null | Value::Object(_)) {
            return Err(Exit::usage(
                "KEY=VALUE fields need --data to be a JSON object (or no --data)",
            ));
        }
        let data = merge(data, &fields);
        Ok(Template {
            topic,
            kind,
            source: Some(
                args.source
                    .clone()
                    .unwrap_or_else(crate::event::default_source),
            ),
            data,
            fields,
        })
    }

    /// An event of this invocation with `data`.
    pub(super) fn event(&self, data: Value) -> NewEvent {
        let mut e = NewEvent::new(self.topic.clone());
        e.kind = self.kind.clone();
        e.source = self.source.clone();
        e.data = data;
        e
    }

    /// An event of this invocation with another type.
    pub(super) fn typed(&self, kind: &str, data: Value) -> NewEvent {
        let mut e = self.event(data);
        e.kind = Some(kind.to_string());
        e
    }
}

/// `KEY=VALUE` → string, `KEY:=JSON` → JSON value.
pub(super) fn parse_field(f: &str) -> Result<(String, Value), Exit> {
    let eq = f.find('=').ok_or_else(|| {
        Exit::usage(format!(
            "unexpected argument {f:?}: after TOPIC [TYPE] come data fields KEY=VALUE (string) or KEY:=JSON"
        ))
    })?;
    let (key, raw) = (&f[..eq], &f[eq + 1..]);
    let (key, value) = match key.strip_suffix(':') {
        Some(k) => {
            let v = serde_json::from_str(raw).map_err(|e| {
                Exit::usage(format!(
                    "field {f:?}: {raw:?} is not valid JSON ({e}); use KEY=VALUE for a string"
                ))
            })?;
            (k, v)
        }
        None => (key, Value::String(raw.to_string())),
    };
    if key.is_empty() {
        return Err(Exit::usage(format!(
            "field {f:?} has an empty KEY: use KEY=VALUE or KEY:=JSON"
        )));
    }
    Ok((key.to_string(), value))
}

/// `data` with `fields` set in it (`data` is an object or null).
pub(super) fn merge(data: Value, fields: &Map<String, Value>) -> Value {
    if fields.is_empty() {
        return data;
    }
    let mut obj = match data {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in fields {
        obj.insert(k.clone(), v.clone());
    }
    Value::Object(obj)
}
