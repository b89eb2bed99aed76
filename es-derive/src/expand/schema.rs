//! The schema an event records: its container and fields as serde stores them.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::{Container, Field, Read, Shape, Written};

pub fn container(p: &TokenStream, container: &Container) -> TokenStream {
    let plain = container.shape == Shape::Object
        && container.rename_all.is_none()
        && container.tag.is_none()
        && !container.deny_unknown_fields
        && container.undescribed.is_empty();
    if plain {
        return quote!(#p::ContainerSchema::PLAIN);
    }
    let shape = match container.shape {
        Shape::Object => quote!(Object),
        Shape::Array => quote!(Array),
        Shape::Inner => quote!(Inner),
        Shape::Null => quote!(Null),
    };
    let rename_all = option(container.rename_all.as_deref());
    let tag = option(container.tag.as_deref());
    let tag_value = if container.tag.is_some() { container.tag_value.as_str() } else { "" };
    let deny = container.deny_unknown_fields;
    let undescribed = &container.undescribed;
    quote! {
        #p::ContainerSchema {
            shape: #p::Shape::#shape,
            rename_all: #rename_all,
            tag: #tag,
            tag_value: #tag_value,
            deny_unknown_fields: #deny,
            undescribed: &[#(#undescribed),*],
        }
    }
}

pub fn field(p: &TokenStream, field: &Field) -> TokenStream {
    let Field { name, json_name, aliases, ty, doc, written, read, flatten, undescribed } = field;
    let plain = json_name == name
        && aliases.is_empty()
        && *written == Written::Always
        && *read == Read::Required
        && !flatten
        && undescribed.is_empty();
    if plain {
        return quote!(#p::FieldSchema::plain(#name, #ty, #doc));
    }
    let written = match written {
        Written::Always => quote!(#p::Written::Always),
        Written::Never => quote!(#p::Written::Never),
        Written::Unless(predicate) => quote!(#p::Written::Unless(#predicate)),
    };
    let read = match read {
        Read::Required => quote!(Required),
        Read::Optional => quote!(Optional),
        Read::Defaulted => quote!(Defaulted),
        Read::Ignored => quote!(Ignored),
    };
    quote! {
        #p::FieldSchema {
            name: #name,
            json_name: #json_name,
            aliases: &[#(#aliases),*],
            ty: #ty,
            doc: #doc,
            written: #written,
            read: #p::Read::#read,
            flatten: #flatten,
            undescribed: &[#(#undescribed),*],
        }
    }
}

fn option(value: Option<&str>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}
