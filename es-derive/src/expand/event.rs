//! `#[event(version = N, ...)]`: the derives an event needs and `impl Event`.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{self, FieldModel};
use crate::attr::{self, EventArgs};
use crate::check;
use crate::ctxt::Ctxt;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = attr::parse_event_args(&mut cx, args);
    let item: syn::Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(error) => {
            let error = error.to_compile_error();
            return quote!(#item #error);
        }
    };
    let syn::Item::Struct(mut item) = item else {
        cx.error(
            item_keyword(&item),
            "`#[event]` goes on a struct: each event is one struct whose fields are the event's data",
        );
        let errors = cx.into_compile_errors();
        return quote!(#item #errors);
    };
    // Without a version the upcasting keys cannot be checked, and the expansion goes on as
    // version 1 (which upcasts nothing) so that uses of the event raise no further errors.
    let version = match args.version.get() {
        Some(version) => {
            check::event_upcasts(&mut cx, &args, version.value);
            version.value
        }
        None => {
            if !args.incomplete {
                cx.push(syn::Error::new(Span::call_site(), "missing `version`: write `#[event(version = 1)]`"));
            }
            1
        }
    };
    let generic = !item.generics.params.is_empty() || item.generics.where_clause.is_some();
    if generic {
        cx.error(&item.generics, "an event cannot be generic: its stored type name and schema must be fixed");
    }

    let krate = ast::crate_path(args.krate.get());
    add_derives(&mut item, &krate);
    let event_impl = if generic { TokenStream::new() } else { event_impl(&item, &args, version, &krate) };
    let errors = cx.into_compile_errors();
    quote! {
        #item
        #event_impl
        #errors
    }
}

/// The span of `enum`, `fn`, … for "wrong item kind".
fn item_keyword(item: &syn::Item) -> TokenStream {
    match item {
        syn::Item::Enum(item) => item.enum_token.to_token_stream(),
        syn::Item::Union(item) => item.union_token.to_token_stream(),
        syn::Item::Fn(item) => item.sig.fn_token.to_token_stream(),
        syn::Item::Type(item) => item.type_token.to_token_stream(),
        syn::Item::Trait(item) => item.trait_token.to_token_stream(),
        other => other.to_token_stream(),
    }
}

/// Adds `Serialize`, `Deserialize`, `Debug`, `Clone` and `PartialEq` unless a derive below
/// `#[event]` already has them.
fn add_derives(item: &mut syn::ItemStruct, krate: &TokenStream) {
    let written = ast::written_derives(&item.attrs);
    let missing = |name: &str| !written.iter().any(|w| w == name);
    let mut std_derives = Vec::new();
    if missing("Debug") {
        std_derives.push(quote!(::core::fmt::Debug));
    }
    if missing("Clone") {
        std_derives.push(quote!(::core::clone::Clone));
    }
    if missing("PartialEq") {
        std_derives.push(quote!(::core::cmp::PartialEq));
    }
    let mut serde_derives = Vec::new();
    if missing("Serialize") {
        serde_derives.push(quote!(#krate::__private::serde::Serialize));
    }
    if missing("Deserialize") {
        serde_derives.push(quote!(#krate::__private::serde::Deserialize));
    }
    let mut added: Vec<syn::Attribute> = Vec::new();
    if !serde_derives.is_empty() {
        let serde_path = format!("{krate}::__private::serde").replace(' ', "");
        added.push(syn::parse_quote!(#[derive(#(#serde_derives),*)]));
        added.push(syn::parse_quote!(#[serde(crate = #serde_path)]));
    }
    if !std_derives.is_empty() {
        added.push(syn::parse_quote!(#[derive(#(#std_derives),*)]));
    }
    added.append(&mut item.attrs);
    item.attrs = added;
}

fn event_impl(item: &syn::ItemStruct, args: &EventArgs, version: u32, krate: &TokenStream) -> TokenStream {
    let ident = &item.ident;
    let rust_type = ident.to_string();
    let name = args.name.get().map_or_else(|| rust_type.clone(), syn::LitStr::value);
    let aliases: Vec<String> =
        args.aliases.get().map(|a| a.iter().map(syn::LitStr::value).collect()).unwrap_or_default();
    let p = quote!(#krate::__private);

    let older = if let Some(older) = args.upcast_from.get().filter(|_| version > 1) {
        // Every use of `older` is an `<#older as EventOps>` path spanned at it: if it is not an
        // event, the uses fail with one and the same error, which rustc reports once.
        quote_spanned! {older.span()=>
            <#older as #p::EventOps>::decode_payload(version, payload).map(<Self as #p::UpcastFrom<#older>>::upcast_from)
        }
    } else if let Some(steps) = args.upcast_json.get().filter(|steps| version > 1 && !steps.is_empty()) {
        let functions = steps.iter().filter(|s| s.from < version).map(|s| {
            let function = &s.function;
            quote_spanned!(function.span()=> #function)
        });
        quote! {
            const STEPS: &[#p::JsonUpcaster] = &[#(#functions),*];
            #p::decode_json_upcast::<Self>(version, payload, #rust_type, #version, STEPS)
        }
    } else {
        quote!(::core::result::Result::Err(#p::unsupported_version(version, #version)))
    };

    let upcast_schema = if let Some(older) = args.upcast_from.get().filter(|_| version > 1) {
        quote_spanned!(older.span()=> #p::Upcast::Typed { from: #p::std::boxed::Box::new(<#older as #p::EventOps>::schema()) })
    } else if let Some(steps) = args.upcast_json.get().filter(|steps| version > 1 && !steps.is_empty()) {
        let oldest = version - u32::try_from(steps.iter().filter(|s| s.from < version).count()).unwrap_or(0);
        quote!(#p::Upcast::Json { oldest: #oldest })
    } else {
        quote!(#p::Upcast::None)
    };

    let chain_checks = args.upcast_from.get().filter(|_| version > 1).map(|older| {
        let older_text = attr::path_text(older);
        let want = version - 1;
        let version_message = format!(
            "`upcast_from = {older_text}` on `{rust_type}` (version {version}): `{older_text}` must be version {want}; \
             upcasting goes one version at a time, so give the older struct `version = {want}` or chain through the versions between"
        );
        let name_message = format!(
            "`upcast_from = {older_text}` on `{rust_type}`: `{older_text}` must be stored under the type name \"{name}\" \
             (or one of its aliases); write `#[event(name = \"{name}\", version = {want})]` on `{older_text}`"
        );
        quote_spanned! {older.span()=>
            const _: () = {
                ::core::assert!(<#older as #p::EventOps>::VERSION == #want, #version_message);
                ::core::assert!(
                    #p::str_eq(<#older as #p::EventOps>::NAME, #name)
                        || #p::contains(&[#(#aliases),*], <#older as #p::EventOps>::NAME),
                    #name_message
                );
            };
        }
    });

    let doc = ast::doc_of(&item.attrs);
    let fields = ast::fields_of(&item.fields)
        .into_iter()
        .map(|FieldModel { name, ty, doc }| quote!(#p::FieldSchema { name: #name, ty: #ty, doc: #doc }));

    quote! {
        #[automatically_derived]
        impl #p::Event for #ident {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            const ALIASES: &'static [&'static str] = &[#(#aliases),*];

            #[inline]
            fn decode_payload(version: u32, payload: &str) -> ::core::result::Result<Self, #p::DecodeErrorKind> {
                if version == #version {
                    return #p::decode_current(payload, #rust_type, #version);
                }
                if version > #version {
                    return ::core::result::Result::Err(#p::future_version(version, #version));
                }
                #older
            }

            fn schema() -> #p::EventSchema {
                #p::EventSchema {
                    name: #name,
                    version: #version,
                    aliases: &[#(#aliases),*],
                    rust_type: #rust_type,
                    doc: #doc,
                    fields: &[#(#fields),*],
                    upcast: #upcast_schema,
                }
            }
        }
        #chain_checks
    }
}
