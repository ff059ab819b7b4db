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
use tonic::Status;

use super::routes::Route;
use crate::{domain::ErrorClass, service::status::status_from_parts};

fn invalid(id: &str, message: String) -> Status {
    status_from_parts(ErrorClass::InvalidArgument, id, &message, None)
}

const DESERIALIZE: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(true);

/// A JSON body as a message of type `desc`: zero bytes or only whitespace is the empty message;
/// anything but a JSON object, truncated input or trailing text is refused.
pub fn decode_body(desc: &MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, Status> {
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Ok(DynamicMessage::new(desc.clone()));
    };
    if *first != b'{' {
        return Err(invalid("REQUEST-InvalidJson", "the request body must be a JSON object".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let message = DynamicMessage::deserialize_with_options(desc.clone(), &mut de, &DESERIALIZE)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| invalid("REQUEST-InvalidJson", format!("invalid JSON request body: {e}")))?;
    Ok(message)
}

/// The protobuf bytes of a Connect JSON request.
pub fn connect_request(desc: &MessageDescriptor, body: &[u8]) -> Result<Bytes, Status> {
    Ok(decode_body(desc, body)?.encode_to_vec().into())
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
    let mut message = match route.body.as_str() {
        "*" => decode_body(&input, body)?,
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
            let field = input.get_field_by_name(field_name).ok_or_else(|| {
                status_from_parts(ErrorClass::Internal, "INTERNAL", "route body names an unknown field", None)
            })?;
            let mut outer = Map::new();
            if body.iter().any(|b| !b.is_ascii_whitespace()) {
                let value: Json = serde_json::from_slice(body)
                    .map_err(|e| invalid("REQUEST-InvalidJson", format!("invalid JSON request body: {e}")))?;
                outer.insert(field.json_name().to_owned(), value);
            }
            DynamicMessage::deserialize_with_options(input.clone(), Json::Object(outer), &DESERIALIZE)
                .map_err(|e| invalid("REQUEST-InvalidJson", format!("invalid JSON request body: {e}")))?
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
        add_query(&input, &bound, query, &mut params)?;
    }
    for (path, value) in variables {
        set_path(&input, &mut params, path, Json::String(value.clone()), true)?;
    }
    if !params.is_empty() {
        let overlay = DynamicMessage::deserialize_with_options(input.clone(), Json::Object(params), &DESERIALIZE)
            .map_err(|e| invalid("REQUEST-InvalidParameter", format!("invalid path or query parameter: {e}")))?;
        merge(&mut message, &overlay);
    }
    Ok(message.encode_to_vec().into())
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

/// Well-known types whose JSON form is a string or number.
fn is_scalar_like(m: &MessageDescriptor) -> bool {
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
        let field = desc.get_field_by_name(part).ok_or_else(|| {
            status_from_parts(ErrorClass::Internal, "INTERNAL", "route variable names an unknown field", None)
        })?;
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
    let message = DynamicMessage::decode(desc.clone(), proto).map_err(|e| {
        status_from_parts(ErrorClass::Internal, "INTERNAL", &format!("undecodable response: {e}"), None)
    })?;
    let mut out = Vec::with_capacity(proto.len() * 2 + 16);
    let mut ser = serde_json::Serializer::new(&mut out);
    let result = match (response_body, message.descriptor().get_field_by_name(response_body)) {
        ("" | "*", _) | (_, None) => message.serialize_with_options(&mut ser, &SERIALIZE),
        (_, Some(field)) => match message.get_field(&field).as_ref() {
            Value::Message(inner) => inner.serialize_with_options(&mut ser, &SERIALIZE),
            _ => message.serialize_with_options(&mut ser, &SERIALIZE),
        },
    };
    result.map_err(|e| {
        status_from_parts(ErrorClass::Internal, "INTERNAL", &format!("response not serializable: {e}"), None)
    })?;
    Ok(out.into())
}
