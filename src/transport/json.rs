//! Proto3 JSON in and out, driven by the descriptors: request bodies, REST path variables and
//! query parameters become one request message; response messages become JSON. Unknown fields
//! are refused, naming the field.

use bytes::Bytes;
use prost::Message;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, SerializeOptions,
    Value,
};
use serde_json::{Map, Value as Json};
use tonic::{Code, Status};

use super::{refuse, routes::Route};
use crate::service::status::internal;

fn invalid(id: &str, message: String) -> Status {
    refuse::status(Code::InvalidArgument, id, &message)
}

const DESERIALIZE: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(true);

/// A JSON body as a message of type `desc`: zero bytes or only whitespace is the empty message;
/// anything but a JSON object, truncated input or trailing text is refused.
pub fn decode_body(desc: &MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(desc.clone()));
    }
    let value =
        strict_parse(body).map_err(|e| invalid("REQUEST-InvalidJson", format!("invalid JSON request body: {e}")))?;
    if !value.is_object() {
        return Err(invalid("REQUEST-InvalidJson", "the request body must be a JSON object".into()));
    }
    decode_value(desc, value, "REQUEST-InvalidJson", "invalid JSON request body")
}

/// Parses JSON, refusing an object that names a key twice: two parsers could disagree on which
/// value counts (which token was sent, say), so the ambiguity is never resolved silently.
fn strict_parse(body: &[u8]) -> Result<Json, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = <StrictValue as serde::Deserialize>::deserialize(&mut de)?.0;
    de.end()?;
    Ok(value)
}

/// A `serde_json::Value` built by a visitor that refuses duplicate keys.
struct StrictValue(Json);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("field `{key}` is given twice")));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Json::Object(object))
    }
}

/// A JSON value as a message of type `desc`, after the checks the proto3 JSON parser leaves out;
/// errors carry `id` and start with `what`.
fn decode_value(desc: &MessageDescriptor, value: Json, id: &str, what: &str) -> Result<DynamicMessage, Status> {
    check_message(&value, desc, &mut Vec::new()).map_err(|e| invalid(id, format!("{what}: {e}")))?;
    DynamicMessage::deserialize_with_options(desc.clone(), &value, &DESERIALIZE).map_err(|e| {
        let field = failing_field(desc, &value).map(|f| format!("field `{f}`: ")).unwrap_or_default();
        invalid(id, format!("{what}: {field}{e}"))
    })
}

/// The path of the first field whose value the parser refuses: its errors do not say where.
/// Only called on failure; descends only through the schema's own messages, so the work stays
/// a small multiple of the body's size.
fn failing_field(desc: &MessageDescriptor, value: &Json) -> Option<String> {
    let Json::Object(fields) = value else { return None };
    fields.iter().find_map(|(key, value)| {
        let alone = Json::Object(Map::from_iter([(key.clone(), value.clone())]));
        if DynamicMessage::deserialize_with_options(desc.clone(), alone, &DESERIALIZE).is_ok() {
            return None;
        }
        let Some(field) = desc.get_field_by_json_name(key).or_else(|| desc.get_field_by_name(key)) else {
            return Some(key.clone());
        };
        let own = |m: &MessageDescriptor| !m.full_name().starts_with("google.protobuf.");
        let inner = match (field.kind(), value) {
            (Kind::Message(entry), Json::Object(entries)) if field.is_map() => {
                match entry.map_entry_value_field().kind() {
                    Kind::Message(m) if own(&m) => entries.values().find_map(|v| failing_field(&m, v)),
                    _ => None,
                }
            }
            (Kind::Message(m), Json::Array(items)) if field.is_list() && own(&m) => {
                items.iter().find_map(|v| failing_field(&m, v))
            }
            (Kind::Message(m), value) if own(&m) => failing_field(&m, value),
            _ => None,
        };
        Some(match inner {
            Some(rest) => format!("{}.{rest}", field.json_name()),
            None => field.json_name().to_owned(),
        })
    })
}

/// What proto3 JSON forbids but the parser accepts: enum numbers no value defines, and more than
/// nine fractional digits in a `Duration` or `Timestamp`. Everything else (unknown fields, wrong
/// types, ranges) the parser itself refuses.
fn check_message(value: &Json, desc: &MessageDescriptor, path: &mut Vec<String>) -> Result<(), String> {
    match desc.full_name() {
        "google.protobuf.Duration" | "google.protobuf.Timestamp" => return check_fraction(value, desc.name(), path),
        name if name.starts_with("google.protobuf.") => return Ok(()),
        _ => {}
    }
    let Json::Object(fields) = value else { return Ok(()) };
    let mut given = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        let Some(field) = desc.get_field_by_json_name(key).or_else(|| desc.get_field_by_name(key)) else { continue };
        path.push(field.json_name().to_owned());
        // `sessionToken` and `session_token` name one field: given both, the parser would keep
        // the last and silently drop the other (a wrong token, say), so neither counts. A
        // `null` is the field's default, which the other name's value may set.
        if !value.is_null() {
            if given.contains(&field.number()) {
                return Err(format!("field `{}` is given twice, by its JSON and its proto name", path.join(".")));
            }
            given.push(field.number());
        }
        let checked = match value {
            Json::Null => Ok(()),
            Json::Object(entries) if field.is_map() => {
                let Kind::Message(entry) = field.kind() else { unreachable!("map fields are messages") };
                let value_field = entry.map_entry_value_field();
                entries.values().try_for_each(|v| check_value(v, &value_field, path))
            }
            Json::Array(items) if field.is_list() => items.iter().try_for_each(|v| check_value(v, &field, path)),
            value => check_value(value, &field, path),
        };
        path.pop();
        checked?;
    }
    Ok(())
}

fn check_value(value: &Json, field: &FieldDescriptor, path: &mut Vec<String>) -> Result<(), String> {
    match field.kind() {
        Kind::Enum(e) => match value.as_i64() {
            Some(n) if i32::try_from(n).ok().and_then(|n| e.get_value(n)).is_none() => {
                Err(format!("field `{}`: {n} is not a value of {}", path.join("."), e.full_name()))
            }
            _ => Ok(()),
        },
        Kind::Message(m) => check_message(value, &m, path),
        _ => Ok(()),
    }
}

fn check_fraction(value: &Json, type_name: &str, path: &[String]) -> Result<(), String> {
    let Some(text) = value.as_str() else { return Ok(()) };
    let fraction = text.split_once('.').map_or(0, |(_, rest)| rest.bytes().take_while(u8::is_ascii_digit).count());
    if fraction > 9 {
        return Err(format!("field `{}`: a {type_name} has at most 9 fractional digits", path.join(".")));
    }
    Ok(())
}

/// The protobuf bytes of a Connect JSON request.
pub fn connect_request(desc: &MessageDescriptor, body: &[u8]) -> Result<Bytes, Status> {
    if let Some(bytes) = typed_request(desc.full_name(), body) {
        return Ok(bytes);
    }
    Ok(decode_body(desc, body)?.encode_to_vec().into())
}

/// The requests whose fields are all strings, through their generated (pbjson) deserializers:
/// for such a message they accept a subset of what the reflective path accepts (they refuse
/// every unknown field, a key given twice or by both its names, and a `null` where a string is
/// due) and mean the same by it. `None` when the body is not one of those accepted: the
/// reflective path then decides, and words any refusal, as for every other message. A body
/// with `null` anywhere goes there too: pbjson does not see a key given twice when the first
/// value was `null` (the property test in `json_tests` found it).
fn typed_request(full_name: &str, body: &[u8]) -> Option<Bytes> {
    use crate::proto::session as s;
    fn typed<M: Message + for<'de> serde::Deserialize<'de>>(body: &[u8]) -> Option<Bytes> {
        if body.windows(4).any(|w| w == b"null") {
            return None;
        }
        let message: M = serde_json::from_slice(body).ok()?;
        Some(message.encode_to_vec().into())
    }
    match full_name {
        "zitadel.session.v2.GetSessionRequest" => typed::<s::GetSessionRequest>(body),
        "zitadel.session.v2.DeleteSessionRequest" => typed::<s::DeleteSessionRequest>(body),
        _ => None,
    }
}

/// The protobuf bytes of a REST request: the body as the rule says, then query parameters for
/// fields neither path nor body binds, then path variables (which win).
pub fn rest_request(
    route: &Route,
    variables: &[(String, String)],
    query: Option<&str>,
    body: &[u8],
) -> Result<Bytes, Status> {
    let input = route.method.input();
    match direct_rest_request(route, &input, variables, query, body) {
        Some(bytes) => Ok(bytes),
        None => general_rest_request(route, &input, variables, query, body),
    }
}

/// Any REST call: the body, query and path bound through a dynamic message.
fn general_rest_request(
    route: &Route,
    input: &MessageDescriptor,
    variables: &[(String, String)],
    query: Option<&str>,
    body: &[u8],
) -> Result<Bytes, Status> {
    let mut message = match route.body.as_str() {
        "*" => decode_body(input, body)?,
        "" => {
            if body.iter().any(|b| !b.is_ascii_whitespace()) {
                return Err(invalid(
                    "REQUEST-UnexpectedBody",
                    format!("{} takes no request body", route.method.name()),
                ));
            }
            DynamicMessage::new(input.clone())
        }
        field_name => {
            let field = input
                .get_field_by_name(field_name)
                .ok_or_else(|| internal(format_args!("route body names the unknown field `{field_name}`")))?;
            let mut outer = Map::new();
            if body.iter().any(|b| !b.is_ascii_whitespace()) {
                let value = strict_parse(body)
                    .map_err(|e| invalid("REQUEST-InvalidJson", format!("invalid JSON request body: {e}")))?;
                outer.insert(field.json_name().to_owned(), value);
            }
            decode_value(input, Json::Object(outer), "REQUEST-InvalidJson", "invalid JSON request body")?
        }
    };
    let mut params = Map::new();
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        if route.body == "*" {
            let name = query.split('&').next().unwrap_or_default().split('=').next().unwrap_or_default();
            return Err(invalid(
                "REQUEST-UnknownParameter",
                format!(
                    "query parameter `{name}` is not accepted: {} takes all fields from the body",
                    route.method.name()
                ),
            ));
        }
        let bound: Vec<&str> = route.path_fields().chain(std::iter::once(route.body.as_str())).collect();
        add_query(input, &bound, query, &mut params)?;
    }
    // A variable bound to a top-level string field (`{session_id}`) is the field's value as it
    // is: set directly, after the rest, so that it wins. Any other goes through JSON for its type.
    let mut direct = Vec::new();
    for (path, value) in variables {
        match input.get_field_by_name(path) {
            Some(field) if is_direct(&field) => {
                direct.push((field, value));
            }
            _ => set_path(input, &mut params, path, Json::String(value.clone()), true)?,
        }
    }
    if !params.is_empty() {
        let overlay =
            decode_value(input, Json::Object(params), "REQUEST-InvalidParameter", "invalid path or query parameter")?;
        merge(&mut message, &overlay);
    }
    for (field, value) in direct {
        message.set_field(&field, Value::String(value.clone()));
    }
    Ok(message.encode_to_vec().into())
}

/// The common shape of a REST call, without a dynamic message: no query, every path variable a
/// top-level string field, and a body that is empty or (for `*`) a message `typed_request`
/// takes. Its bytes are the body's message followed by the variables' fields, which win as
/// they do below: in protobuf the last value of a singular field is the one that counts.
/// `None` for any other call, which the general path serves.
fn direct_rest_request(
    route: &Route,
    input: &MessageDescriptor,
    variables: &[(String, String)],
    query: Option<&str>,
    body: &[u8],
) -> Option<Bytes> {
    if query.is_some_and(|q| !q.is_empty()) {
        return None;
    }
    let empty = body.iter().all(u8::is_ascii_whitespace);
    let mut bytes = match route.body.as_str() {
        "" | "*" if empty => Vec::new(),
        "*" => typed_request(input.full_name(), body)?.into(),
        _ => return None,
    };
    for (path, value) in variables {
        let field = input.get_field_by_name(path).filter(is_direct)?;
        prost::encoding::string::encode(field.number(), value, &mut bytes);
    }
    Some(bytes.into())
}

/// A top-level string field, which a path variable sets as it is.
fn is_direct(field: &FieldDescriptor) -> bool {
    !field.is_list() && !field.is_map() && matches!(field.kind(), Kind::String)
}

/// Copies every field set in `overlay` into `target`, recursing into messages set in both.
fn merge(target: &mut DynamicMessage, overlay: &DynamicMessage) {
    for (field, value) in overlay.fields() {
        match (value, target.get_field_mut(&field)) {
            (Value::Message(src), Value::Message(dst)) if !field.is_map() && !field.is_list() => merge(dst, src),
            (value, _) => target.set_field(&field, value.clone()),
        }
    }
}

/// Parses `a=1&b.c=x` into the params object, typing each value by its field.
fn add_query(
    input: &MessageDescriptor,
    bound: &[&str],
    query: &str,
    params: &mut Map<String, Json>,
) -> Result<(), Status> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(raw_name)?;
        let value = form_decode(raw_value)?;
        let (field_path, leaf) = resolve(input, &name)?;
        if bound.iter().any(|b| !b.is_empty() && (field_path == *b || field_path.starts_with(&format!("{b}.")))) {
            return Err(invalid(
                "REQUEST-UnknownParameter",
                format!("query parameter `{name}` names a field the path or body already binds"),
            ));
        }
        let typed = typed_value(&leaf, &value).ok_or_else(|| {
            invalid("REQUEST-InvalidParameter", format!("query parameter `{name}` has an invalid value for its type"))
        })?;
        set_path(input, params, &field_path, typed, false).map_err(|_| {
            invalid("REQUEST-DuplicateParameter", format!("query parameter `{name}` is given more than once"))
        })?;
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space.
fn form_decode(s: &str) -> Result<String, Status> {
    super::routes::percent_decode_strict(&s.replace('+', " "))
        .ok_or_else(|| invalid("REQUEST-BadEscape", format!("query `{s}` holds a broken percent-escape")))
}

/// Resolves a dotted JSON- or proto-spelled name to the field path (JSON names) and leaf field.
fn resolve(input: &MessageDescriptor, name: &str) -> Result<(String, FieldDescriptor), Status> {
    let unknown =
        || invalid("REQUEST-UnknownParameter", format!("query parameter `{name}` names no field of the request"));
    let mut desc = input.clone();
    let mut path = Vec::new();
    let parts: Vec<&str> = name.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let field = desc.get_field_by_json_name(part).or_else(|| desc.get_field_by_name(part)).ok_or_else(unknown)?;
        path.push(field.name().to_owned());
        if i + 1 == parts.len() {
            if field.is_map() || (matches!(field.kind(), Kind::Message(m) if !is_scalar_like(&m))) {
                return Err(invalid(
                    "REQUEST-UnknownParameter",
                    format!("query parameter `{name}` cannot set a message field"),
                ));
            }
            return Ok((path.join("."), field));
        }
        match field.kind() {
            Kind::Message(m) if !field.is_list() && !field.is_map() => desc = m,
            _ => return Err(unknown()),
        }
    }
    Err(unknown())
}

/// Well-known types whose JSON form is a string, number or bool: a query parameter may set
/// them (the OpenAPI document lists exactly these).
pub fn is_scalar_like(m: &MessageDescriptor) -> bool {
    matches!(
        m.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.StringValue"
            | "google.protobuf.BoolValue"
            | "google.protobuf.Int32Value"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.FloatValue"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.BytesValue"
    )
}

/// A query value as the JSON the field's type accepts.
fn typed_value(field: &FieldDescriptor, value: &str) -> Option<Json> {
    let leaf_kind = match field.kind() {
        Kind::Message(m) if m.full_name() == "google.protobuf.BoolValue" => Kind::Bool,
        k => k,
    };
    Some(match leaf_kind {
        Kind::Bool => Json::Bool(value.parse().ok()?),
        Kind::Enum(_) => match value.parse::<i64>() {
            Ok(n) => Json::from(n),
            Err(_) => Json::String(value.to_owned()),
        },
        Kind::Double | Kind::Float => match value.parse::<f64>() {
            Ok(n) if n.is_finite() => serde_json::Number::from_f64(n).map(Json::Number)?,
            _ => Json::String(value.to_owned()),
        },
        _ => Json::String(value.to_owned()),
    })
}

/// Sets `path` (proto field names, dotted) in the params object. Repeated fields collect values;
/// a singular field set twice is an error unless `overwrite`.
fn set_path(
    input: &MessageDescriptor,
    params: &mut Map<String, Json>,
    path: &str,
    value: Json,
    overwrite: bool,
) -> Result<(), Status> {
    let duplicate = || invalid("REQUEST-DuplicateParameter", format!("`{path}` is given more than once"));
    let mut desc = input.clone();
    let mut object = params;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let field = desc
            .get_field_by_name(part)
            .ok_or_else(|| internal(format_args!("route variable names the unknown field `{path}`")))?;
        let key = field.json_name().to_owned();
        if i + 1 == parts.len() {
            if field.is_list() {
                match object.entry(key).or_insert_with(|| Json::Array(Vec::new())) {
                    Json::Array(values) => values.push(value),
                    _ => return Err(duplicate()),
                }
            } else if overwrite || !object.contains_key(&key) {
                object.insert(key, value);
            } else {
                return Err(duplicate());
            }
            return Ok(());
        }
        let Kind::Message(next) = field.kind() else {
            return Err(duplicate());
        };
        desc = next;
        object = match object.entry(key).or_insert_with(|| Json::Object(Map::new())) {
            Json::Object(inner) => inner,
            _ => return Err(duplicate()),
        };
    }
    Ok(())
}

const SERIALIZE: SerializeOptions = SerializeOptions::new()
    .stringify_64_bit_integers(true)
    .use_enum_numbers(false)
    .use_proto_field_name(false)
    .skip_default_fields(true);

/// A protobuf response message as proto3 JSON (only `response_body`'s field when the rule names one).
pub fn response_json(desc: &MessageDescriptor, proto: &[u8], response_body: &str) -> Result<Bytes, Status> {
    let whole = matches!(response_body, "" | "*");
    if whole && let Some(json) = typed_response_json(desc.full_name(), proto) {
        return json;
    }
    let message = DynamicMessage::decode(desc.clone(), proto).map_err(undecodable)?;
    let mut out = Vec::with_capacity(proto.len() * 2 + 16);
    let mut ser = serde_json::Serializer::new(&mut out);
    let result = match (whole, message.descriptor().get_field_by_name(response_body)) {
        (true, _) | (_, None) => message.serialize_with_options(&mut ser, &SERIALIZE),
        (_, Some(field)) => match message.get_field(&field).as_ref() {
            Value::Message(inner) => inner.serialize_with_options(&mut ser, &SERIALIZE),
            _ => message.serialize_with_options(&mut ser, &SERIALIZE),
        },
    };
    result.map_err(unserializable)?;
    Ok(out.into())
}

/// The Session API's answers through their generated (pbjson) serializers: the same proto3 JSON
/// as the reflective path, at a fraction of its cost (no dynamic message in between). `None` for
/// any other message type, which the reflective path serves.
fn typed_response_json(full_name: &str, proto: &[u8]) -> Option<Result<Bytes, Status>> {
    use crate::proto::session as s;
    fn typed<M: Message + Default + serde::Serialize>(proto: &[u8]) -> Result<Bytes, Status> {
        let message = M::decode(proto).map_err(undecodable)?;
        let mut out = Vec::with_capacity(proto.len() * 2 + 16);
        serde_json::to_writer(&mut out, &message).map_err(unserializable)?;
        Ok(out.into())
    }
    Some(match full_name {
        "zitadel.session.v2.GetSessionResponse" => typed::<s::GetSessionResponse>(proto),
        "zitadel.session.v2.ListSessionsResponse" => typed::<s::ListSessionsResponse>(proto),
        "zitadel.session.v2.CreateSessionResponse" => typed::<s::CreateSessionResponse>(proto),
        "zitadel.session.v2.SetSessionResponse" => typed::<s::SetSessionResponse>(proto),
        "zitadel.session.v2.DeleteSessionResponse" => typed::<s::DeleteSessionResponse>(proto),
        _ => return None,
    })
}

// A response the handler built that cannot be rendered is a bug: the client learns no more.
fn undecodable(e: prost::DecodeError) -> Status {
    internal(format_args!("undecodable response: {e}"))
}

fn unserializable(e: impl std::fmt::Display) -> Status {
    internal(format_args!("response not serializable: {e}"))
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
