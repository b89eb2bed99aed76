//! The model the expansions work from, read off the user's item.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Attribute, Fields, Meta};

/// One field of an event struct, as the schema records it.
pub struct FieldModel {
    pub name: String,
    pub ty: String,
    pub doc: String,
}

/// The doc comment of an item or field: `///` lines joined, one leading space dropped.
pub fn doc_of(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if let Meta::NameValue(nv) = &attr.meta
            && nv.path.is_ident("doc")
            && let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(text), .. }) = &nv.value
        {
            let text = text.value();
            lines.push(text.strip_prefix(' ').unwrap_or(&text).trim_end().to_owned());
        }
    }
    lines.join("\n").trim().to_owned()
}

pub fn fields_of(fields: &Fields) -> Vec<FieldModel> {
    fields
        .iter()
        .enumerate()
        .map(|(index, field)| FieldModel {
            name: field.ident.as_ref().map_or_else(|| index.to_string(), |ident| unraw(&ident.to_string())),
            ty: type_text(&field.ty),
            doc: doc_of(&field.attrs),
        })
        .collect()
}

fn unraw(name: &str) -> String {
    name.strip_prefix("r#").unwrap_or(name).to_owned()
}

/// A type as the user wrote it, with the token spacing of `to_string` tidied (`Vec<String>`,
/// not `Vec < String >`).
pub fn type_text(ty: &impl ToTokens) -> String {
    let raw = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(raw.len());
    let chars: Vec<char> = raw.chars().collect();
    for (index, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let before = index.checked_sub(1).and_then(|i| chars.get(i)).copied().unwrap_or(' ');
            let after = chars.get(index + 1).copied().unwrap_or(' ');
            let tight = matches!(before, '<' | '&' | ':' | '(' | '[')
                || matches!(after, '<' | '>' | ',' | ':' | ')' | ']' | ';');
            if tight && !(before == ';' || after == '=') {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// The derives already written below `#[event]`, by their last path segment.
pub fn written_derives(attrs: &[Attribute]) -> Vec<String> {
    let mut names = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("derive")) {
        let _ = attr.parse_nested_meta(|meta| {
            if let Some(last) = meta.path.segments.last() {
                names.push(last.ident.to_string());
            }
            Ok(())
        });
    }
    names
}

/// `::es` or the user's `crate = path`.
pub fn crate_path(krate: Option<&syn::Path>) -> TokenStream {
    match krate {
        Some(path) => path.to_token_stream(),
        None => quote::quote!(::es),
    }
}
