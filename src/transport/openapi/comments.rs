//! The `.proto` files' leading comments (kept in the descriptor set's source info), as the
//! descriptions of the document's operations, schemas and properties.

use prost_reflect::{
    EnumDescriptor, FieldDescriptor, FileDescriptor, MessageDescriptor, MethodDescriptor, ServiceDescriptor,
};

/// The leading comment of the element at `path` in `file`, trimmed, when there is one.
fn leading(file: FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let lines: Vec<&str> = text.lines().map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end()).collect();
    let joined = lines.join("\n").trim().to_owned();
    (!joined.is_empty()).then_some(joined)
}

pub(super) fn of_message(m: &MessageDescriptor) -> Option<String> {
    leading(m.parent_file(), m.path())
}

pub(super) fn of_field(f: &FieldDescriptor) -> Option<String> {
    leading(f.parent_file(), f.path())
}

pub(super) fn of_enum(e: &EnumDescriptor) -> Option<String> {
    leading(e.parent_file(), e.path())
}

pub(super) fn of_method(m: &MethodDescriptor) -> Option<String> {
    leading(m.parent_file(), m.path())
}

pub(super) fn of_service(s: &ServiceDescriptor) -> Option<String> {
    leading(s.parent_file(), s.path())
}
