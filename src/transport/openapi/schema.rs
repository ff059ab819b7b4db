//! Proto3 JSON as JSON Schema (2020-12, as OpenAPI 3.1 uses it): each message a component
//! referenced by its full name, each field by its JSON name and in the form the transcoder
//! reads and writes it (64-bit integers as strings, enums by name, well-known types in their
//! JSON forms).

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json, json};

use super::comments;

/// The component schemas a document references, filled as references are made.
#[derive(Debug, Default)]
pub(super) struct Schemas {
    components: BTreeMap<String, Json>,
    /// Messages referenced whose component is not built yet (a message may refer to itself).
    pending: Vec<MessageDescriptor>,
    seen: BTreeSet<String>,
}

impl Schemas {
    /// The schema of a value of message type `message`: a well-known type inline, any other a
    /// `$ref` to its component.
    pub(super) fn message(&mut self, message: &MessageDescriptor) -> Json {
        if let Some(known) = well_known(message) {
            return known;
        }
        let name = message.full_name().to_owned();
        if self.seen.insert(name.clone()) {
            self.pending.push(message.clone());
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// The schema of `field` as it appears in a message: repeated as an array, a map as an object.
    pub(super) fn field(&mut self, field: &FieldDescriptor) -> Json {
        let mut schema = if field.is_map() {
            let Kind::Message(entry) = field.kind() else { unreachable!("map fields are messages") };
            let value = self.kind(&entry.map_entry_value_field().kind());
            let mut object = json!({ "type": "object", "additionalProperties": value });
            if let Some(keys) = map_keys(&entry.map_entry_key_field().kind()) {
                object["propertyNames"] = keys;
            }
            object
        } else if field.is_list() {
            json!({ "type": "array", "items": self.kind(&field.kind()) })
        } else {
            self.kind(&field.kind())
        };
        if let Some(text) = comments::of_field(field) {
            described(&mut schema, text);
        }
        schema
    }

    /// The schema of one value of `kind`.
    pub(super) fn kind(&mut self, kind: &Kind) -> Json {
        match kind {
            Kind::Message(m) => self.message(m),
            other => scalar(other),
        }
    }

    /// Builds every pending component (and those they reference) and returns them by name.
    pub(super) fn finish(mut self) -> Map<String, Json> {
        while let Some(message) = self.pending.pop() {
            let schema = self.object(&message);
            self.components.insert(message.full_name().to_owned(), schema);
        }
        self.components.into_iter().collect()
    }

    fn object(&mut self, message: &MessageDescriptor) -> Json {
        let mut properties = Map::new();
        for field in message.fields() {
            properties.insert(field.json_name().to_owned(), self.field(&field));
        }
        let mut schema = json!({ "type": "object", "properties": properties, "additionalProperties": false });
        let mut notes: Vec<String> = comments::of_message(message).into_iter().collect();
        // The parser refuses two members of one oneof: no two may be present together.
        let mut pairs = Vec::new();
        for oneof in message.oneofs().filter(|o| !o.is_synthetic()) {
            let members: Vec<String> = oneof.fields().map(|f| f.json_name().to_owned()).collect();
            for (i, a) in members.iter().enumerate() {
                pairs.extend(members[i + 1..].iter().map(|b| json!({ "required": [a, b] })));
            }
            let listed: Vec<String> = members.iter().map(|m| format!("`{m}`")).collect();
            notes.push(format!("At most one of {} (oneof `{}`).", listed.join(", "), oneof.name()));
        }
        if !pairs.is_empty() {
            schema["not"] = json!({ "anyOf": pairs });
        }
        let renamed: Vec<String> = message
            .fields()
            .filter(|f| f.json_name() != f.name())
            .map(|f| format!("`{}` as `{}`", f.json_name(), f.name()))
            .collect();
        if !renamed.is_empty() {
            notes.push(format!("The proto field names are accepted on input too: {}.", renamed.join(", ")));
        }
        if !notes.is_empty() {
            described(&mut schema, notes.join("\n\n"));
        }
        schema
    }
}

fn described(schema: &mut Json, text: String) {
    if let Json::Object(fields) = schema {
        fields.insert("description".into(), Json::String(text));
    }
}

/// A scalar field's value in proto3 JSON, as the server writes it (it also reads integers given
/// as numbers or strings, and enums given by number).
fn scalar(kind: &Kind) -> Json {
    match kind {
        Kind::Double | Kind::Float => json!({
            "anyOf": [
                { "type": "number" },
                { "type": "string", "enum": ["NaN", "Infinity", "-Infinity"] }
            ]
        }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({ "type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX })
        }
        Kind::Uint32 | Kind::Fixed32 => json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX }),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$" })
        }
        Kind::Uint64 | Kind::Fixed64 => json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$" }),
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::String => json!({ "type": "string" }),
        Kind::Bytes => json!({ "type": "string", "format": "byte", "contentEncoding": "base64" }),
        Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => json!({ "type": "null" }),
        Kind::Enum(e) => {
            let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
            let mut schema = json!({ "type": "string", "enum": names });
            let mut note = format!("{}, by value name (a defined number is accepted on input too).", e.full_name());
            if let Some(text) = comments::of_enum(e) {
                note = format!("{text}\n\n{note}");
            }
            described(&mut schema, note);
            schema
        }
        Kind::Message(m) => json!({ "$ref": format!("#/components/schemas/{}", m.full_name()) }),
    }
}

/// Map keys are JSON object names; those of integer and bool maps are the numbers' text.
fn map_keys(kind: &Kind) -> Option<Json> {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Some(json!({ "pattern": "^-?[0-9]+$" }))
        }
        Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64 => Some(json!({ "pattern": "^[0-9]+$" })),
        Kind::Bool => Some(json!({ "enum": ["true", "false"] })),
        _ => None,
    }
}

/// The well-known types, which proto3 JSON writes in forms of their own.
fn well_known(message: &MessageDescriptor) -> Option<Json> {
    let wrapped = |kind: Kind| {
        let mut schema = scalar(&kind);
        described(&mut schema, format!("{} (the wrapped value itself).", message.full_name()));
        Some(schema)
    };
    match message.full_name() {
        "google.protobuf.Timestamp" => Some(json!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339, UTC with `Z`, 0, 3, 6 or 9 fractional digits (years 0001 to 9999)."
        })),
        "google.protobuf.Duration" => Some(json!({
            "type": "string",
            "pattern": "^-?[0-9]{1,12}(\\.[0-9]{1,9})?s$",
            "description": "Seconds with up to 9 fractional digits and the suffix `s`, e.g. `3600s` or `1.5s`."
        })),
        "google.protobuf.FieldMask" => Some(json!({
            "type": "string",
            "description": "Field paths in lowerCamelCase, separated by commas."
        })),
        "google.protobuf.Empty" => Some(json!({ "type": "object", "additionalProperties": false })),
        "google.protobuf.Struct" => Some(json!({ "type": "object", "description": "Any JSON object." })),
        "google.protobuf.Value" => Some(json!({ "description": "Any JSON value." })),
        "google.protobuf.ListValue" => Some(json!({ "type": "array", "description": "Any JSON array." })),
        "google.protobuf.Any" => Some(json!({
            "type": "object",
            "properties": { "@type": { "type": "string", "description": "`type.googleapis.com/<full.message.Name>`" } },
            "required": ["@type"],
            "description": "A message of the type `@type` names, its fields beside `@type`."
        })),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => wrapped(Kind::Double),
        "google.protobuf.Int64Value" => wrapped(Kind::Int64),
        "google.protobuf.UInt64Value" => wrapped(Kind::Uint64),
        "google.protobuf.Int32Value" => wrapped(Kind::Int32),
        "google.protobuf.UInt32Value" => wrapped(Kind::Uint32),
        "google.protobuf.BoolValue" => wrapped(Kind::Bool),
        "google.protobuf.StringValue" => wrapped(Kind::String),
        "google.protobuf.BytesValue" => wrapped(Kind::Bytes),
        _ => None,
    }
}
