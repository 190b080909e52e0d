//! The `tracelake` index template: ECS types for the fields the documents carry (keyword for ids and names,
//! `ip` for addresses, `date_nanos` for kernel times), so a fresh cluster does not guess them from the first
//! document. Fields under `tracelake.*` are mapped dynamically.

use serde_json::{Map, Value, json};

/// ECS fields and their types.
pub const FIELDS: &[(&str, &str)] = &[
    ("@timestamp", "date_nanos"),
    ("ecs.version", "keyword"),
    ("message", "match_only_text"),
    ("event.id", "keyword"),
    ("event.kind", "keyword"),
    ("event.module", "keyword"),
    ("event.dataset", "keyword"),
    ("event.action", "keyword"),
    ("event.category", "keyword"),
    ("event.type", "keyword"),
    ("event.severity", "long"),
    ("event.start", "date_nanos"),
    ("event.end", "date_nanos"),
    ("host.name", "keyword"),
    ("host.hostname", "keyword"),
    ("orchestrator.type", "keyword"),
    ("orchestrator.namespace", "keyword"),
    ("orchestrator.resource.type", "keyword"),
    ("orchestrator.resource.name", "keyword"),
    ("orchestrator.resource.id", "keyword"),
    ("orchestrator.resource.parent.type", "keyword"),
    ("container.id", "keyword"),
    ("container.name", "keyword"),
    ("container.runtime", "keyword"),
    ("container.image.name", "keyword"),
    ("container.image.hash.all", "keyword"),
    ("process.pid", "long"),
    ("process.name", "keyword"),
    ("process.executable", "keyword"),
    ("process.command_line", "wildcard"),
    ("process.args", "keyword"),
    ("process.args_count", "long"),
    ("process.working_directory", "keyword"),
    ("process.exit_code", "long"),
    ("process.thread.id", "long"),
    ("process.parent.pid", "long"),
    ("process.parent.executable", "keyword"),
    ("process.parent.command_line", "wildcard"),
    ("process.user.id", "keyword"),
    ("process.real_user.id", "keyword"),
    ("process.group.id", "keyword"),
    ("process.real_group.id", "keyword"),
    ("file.path", "keyword"),
    ("file.name", "keyword"),
    ("file.directory", "keyword"),
    ("file.target_path", "keyword"),
    ("file.inode", "keyword"),
    ("file.mode", "keyword"),
    ("file.uid", "keyword"),
    ("file.gid", "keyword"),
    ("source.ip", "ip"),
    ("source.port", "long"),
    ("source.bytes", "long"),
    ("destination.ip", "ip"),
    ("destination.port", "long"),
    ("destination.bytes", "long"),
    ("network.transport", "keyword"),
    ("network.type", "keyword"),
    ("network.direction", "keyword"),
    ("network.protocol", "keyword"),
    ("rule.id", "keyword"),
    ("rule.name", "keyword"),
    ("rule.ruleset", "keyword"),
    ("log.level", "keyword"),
    ("threat.framework", "keyword"),
    ("threat.tactic.name", "keyword"),
    ("threat.technique.id", "keyword"),
];

/// `properties` of a mapping from dotted names.
pub fn properties(fields: &[(&str, &str)]) -> Value {
    let mut root = Map::new();
    for (path, ty) in fields {
        let mut node = &mut root;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                node.insert(part.to_string(), json!({ "type": ty }));
                break;
            }
            let entry = node.entry(part.to_string()).or_insert_with(|| json!({ "properties": {} }));
            let Some(props) = entry.get_mut("properties").and_then(Value::as_object_mut) else { break };
            node = props;
        }
    }
    Value::Object(root)
}

/// The index pattern an index name template covers: `{table}` and `{date}` become `*`.
pub fn pattern(index: &str) -> String {
    index.replace("{table}", "*").replace("{date}", "*")
}

/// The whole `_index_template` body.
pub fn body(index: &str, data_stream: bool, extra: &[(&str, &str)]) -> Value {
    let mut fields: Vec<(&str, &str)> = FIELDS.to_vec();
    fields.extend_from_slice(extra);
    let mut t = json!({
        "index_patterns": [pattern(index)],
        "priority": 200,
        "_meta": { "description": "tracelake ECS documents (docs/siem.md)" },
        "template": {
            "mappings": {
                "dynamic": true,
                "properties": properties(&fields),
            }
        }
    });
    if data_stream && let Some(o) = t.as_object_mut() {
        o.insert("data_stream".into(), json!({}));
    }
    t
}
