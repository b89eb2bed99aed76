//! The `#[serde(...)]` attributes of an event struct and its fields, read so that the schema
//! describes the JSON serde actually stores. serde itself reports a malformed attribute, so
//! anything unreadable here is skipped silently; what the schema cannot describe is listed as
//! undescribed, never guessed.

use proc_macro2::TokenTree;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, LitStr, Token};

/// Container attributes.
#[derive(Default, Clone)]
pub struct Container {
    /// `rename_all` for serializing, and for deserializing when it differs.
    pub rename_all: Option<String>,
    pub rename_all_de: Option<String>,
    /// `rename = "..."` (serialize side): the tag value of an internally tagged struct.
    pub rename: Option<String>,
    pub tag: Option<String>,
    pub default: bool,
    pub deny_unknown_fields: bool,
    pub transparent: bool,
    pub undescribed: Vec<&'static str>,
}

/// Field attributes.
#[derive(Default, Clone)]
pub struct Field {
    pub rename: Option<String>,
    pub rename_de: Option<String>,
    pub aliases: Vec<String>,
    pub skip_serializing: bool,
    pub skip_deserializing: bool,
    pub skip_serializing_if: Option<String>,
    pub default: bool,
    pub flatten: bool,
    pub undescribed: Vec<&'static str>,
}

const CONTAINER_UNDESCRIBED: &[&str] = &["from", "try_from", "into", "remote"];
const FIELD_UNDESCRIBED: &[&str] = &["with", "serialize_with", "deserialize_with", "getter"];

pub fn container(attrs: &[Attribute]) -> Container {
    let mut out = Container::default();
    for_each_serde_meta(attrs, |meta| {
        let key = ident_of(meta);
        match key.as_str() {
            "rename_all" => {
                let (ser, de) = ser_de(meta);
                out.rename_all = ser.or(out.rename_all.take());
                out.rename_all_de = de.or(out.rename_all_de.take());
            }
            "rename" => out.rename = ser_de(meta).0.or(out.rename.take()),
            "tag" => out.tag = string_value(meta),
            "default" => {
                out.default = true;
                skip_value(meta);
            }
            "deny_unknown_fields" => out.deny_unknown_fields = true,
            "transparent" => out.transparent = true,
            other => {
                if let Some(name) = CONTAINER_UNDESCRIBED.iter().find(|name| **name == other) {
                    out.undescribed.push(name);
                }
                skip_value(meta);
            }
        }
    });
    out
}

pub fn field(attrs: &[Attribute]) -> Field {
    let mut out = Field::default();
    for_each_serde_meta(attrs, |meta| {
        let key = ident_of(meta);
        match key.as_str() {
            "rename" => {
                let (ser, de) = ser_de(meta);
                out.rename = ser.or(out.rename.take());
                out.rename_de = de.or(out.rename_de.take());
            }
            "alias" => out.aliases.extend(string_value(meta)),
            "skip" => {
                out.skip_serializing = true;
                out.skip_deserializing = true;
            }
            "skip_serializing" => out.skip_serializing = true,
            "skip_deserializing" => out.skip_deserializing = true,
            "skip_serializing_if" => out.skip_serializing_if = string_value(meta),
            "default" => {
                out.default = true;
                skip_value(meta);
            }
            "flatten" => out.flatten = true,
            other => {
                if let Some(name) = FIELD_UNDESCRIBED.iter().find(|name| **name == other) {
                    out.undescribed.push(name);
                }
                skip_value(meta);
            }
        }
    });
    out
}

/// Applies a `rename_all` rule to a field name as serde does; `None` for a rule serde does not
/// know (serde reports it).
pub fn apply_rule(rule: &str, field: &str) -> Option<String> {
    let pascal = || {
        let mut out = String::new();
        let mut capitalize = true;
        for c in field.chars() {
            if c == '_' {
                capitalize = true;
            } else if capitalize {
                out.extend(c.to_uppercase());
                capitalize = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    Some(match rule {
        "lowercase" => field.to_ascii_lowercase(),
        "UPPERCASE" | "SCREAMING_SNAKE_CASE" => field.to_ascii_uppercase(),
        "PascalCase" => pascal(),
        "camelCase" => {
            let pascal = pascal();
            let mut chars = pascal.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => pascal,
            }
        }
        "snake_case" => field.to_owned(),
        "kebab-case" => field.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => field.to_ascii_uppercase().replace('_', "-"),
        _ => return None,
    })
}

fn for_each_serde_meta(attrs: &[Attribute], mut each: impl FnMut(&ParseNestedMeta)) {
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            each(&meta);
            Ok(())
        });
    }
}

fn ident_of(meta: &ParseNestedMeta) -> String {
    meta.path.get_ident().map(ToString::to_string).unwrap_or_default()
}

/// `key = "x"` → `(Some(x), None)`; `key(serialize = "x", deserialize = "y")` → both.
fn ser_de(meta: &ParseNestedMeta) -> (Option<String>, Option<String>) {
    if meta.input.peek(Token![=]) {
        return (string_value(meta), None);
    }
    let (mut ser, mut de) = (None, None);
    if meta.input.peek(syn::token::Paren) {
        let _ = meta.parse_nested_meta(|inner| {
            if inner.path.is_ident("serialize") {
                ser = string_value(&inner);
            } else if inner.path.is_ident("deserialize") {
                de = string_value(&inner);
            } else {
                skip_value(&inner);
            }
            Ok(())
        });
    }
    (ser, de)
}

fn string_value(meta: &ParseNestedMeta) -> Option<String> {
    let value = meta.value().ok()?.parse::<LitStr>().ok().map(|lit| lit.value());
    skip_value(meta);
    value
}

/// Consumes whatever is left of this key's value.
fn skip_value(meta: &ParseNestedMeta) {
    while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        if meta.input.parse::<TokenTree>().is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn rules_match_serde() {
        let cases = [
            ("camelCase", "printer_name", "printerName"),
            ("PascalCase", "printer_name", "PrinterName"),
            ("SCREAMING_SNAKE_CASE", "printer_name", "PRINTER_NAME"),
            ("kebab-case", "printer_name", "printer-name"),
            ("SCREAMING-KEBAB-CASE", "printer_name", "PRINTER-NAME"),
            ("lowercase", "printer_name", "printer_name"),
            ("UPPERCASE", "printer_name", "PRINTER_NAME"),
            ("snake_case", "printer_name", "printer_name"),
        ];
        for (rule, field, want) in cases {
            assert_eq!(apply_rule(rule, field).as_deref(), Some(want), "{rule}");
        }
        assert_eq!(apply_rule("Title Case", "a"), None);
    }

    #[test]
    fn container_attributes_are_read() {
        let attrs: Vec<Attribute> = vec![
            parse_quote!(#[serde(rename_all = "camelCase", deny_unknown_fields)]),
            parse_quote!(#[serde(tag = "type", rename = "Shipped", from = "Other")]),
        ];
        let c = container(&attrs);
        assert_eq!(c.rename_all.as_deref(), Some("camelCase"));
        assert_eq!((c.tag.as_deref(), c.rename.as_deref()), (Some("type"), Some("Shipped")));
        assert!(c.deny_unknown_fields);
        assert_eq!(c.undescribed, ["from"]);
    }

    #[test]
    fn field_attributes_are_read() {
        let attrs: Vec<Attribute> = vec![
            parse_quote!(#[serde(rename(serialize = "qty", deserialize = "quantity"), alias = "count")]),
            parse_quote!(#[serde(default = "zero", skip_serializing_if = "is_zero", with = "as_text")]),
        ];
        let f = field(&attrs);
        assert_eq!((f.rename.as_deref(), f.rename_de.as_deref()), (Some("qty"), Some("quantity")));
        assert_eq!(f.aliases, ["count"]);
        assert!(f.default);
        assert_eq!(f.skip_serializing_if.as_deref(), Some("is_zero"));
        assert_eq!(f.undescribed, ["with"]);
    }
}
