//! `#[event(version = N, ...)]`: the derives an event needs and `impl Event`.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{self, Upcast};
use crate::attr::{self, path_text};
use crate::check;
use crate::ctxt::Ctxt;
use crate::expand::schema;
use crate::fallback;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let args = attr::parse_event_args(&cx, args);
    let item: syn::Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(error) => {
            cx.push(error);
            return match cx.check() {
                Err(errors) => fallback::item(&item, &errors),
                Ok(()) => item,
            };
        }
    };
    let syn::Item::Struct(original) = &item else {
        cx.error_spanned_by(
            item_keyword(&item),
            "`#[event]` goes on a struct: each event is one struct whose fields are the event's data",
        );
        return match cx.check() {
            Err(errors) => fallback::item(&item, &errors),
            Ok(()) => item.to_token_stream(),
        };
    };
    let model = ast::Event::from_syn(args, original);
    check::event(&cx, &model);
    match cx.check() {
        Ok(()) => tokens(&model, true),
        Err(errors) => fallback::event(&model, &errors),
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

/// The struct with its derives and, unless it is generic, `impl Event`. `valid` is false for
/// the fallback: the impl then reads only the struct's own version.
pub fn tokens(model: &ast::Event, valid: bool) -> TokenStream {
    let item = with_derives(model);
    if model.generic() {
        return item;
    }
    let event_impl = event_impl(model, valid);
    quote!(#item #event_impl)
}

/// Adds `Serialize`, `Deserialize`, `Debug`, `Clone` and `PartialEq` (and `JsonSchema` with
/// feature `json-schema`) unless a derive below `#[event]` already has them.
fn with_derives(model: &ast::Event) -> TokenStream {
    let krate = &model.krate;
    let missing = |name: &str| !model.written_derives.iter().any(|w| w == name);
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
    let mut added = TokenStream::new();
    if !serde_derives.is_empty() {
        let serde_path = format!("{krate}::__private::serde").replace(' ', "");
        added.extend(quote!(#[derive(#(#serde_derives),*)] #[serde(crate = #serde_path)]));
    }
    if !std_derives.is_empty() {
        added.extend(quote!(#[derive(#(#std_derives),*)]));
    }
    if json_schema() && missing("JsonSchema") {
        let schemars_path = format!("{krate}::__private::schemars").replace(' ', "");
        added.extend(quote! {
            #[derive(#krate::__private::schemars::JsonSchema)]
            #[schemars(crate = #schemars_path)]
        });
    }
    if json_schema() {
        let item = with_undescribed_as_any(model);
        return quote!(#added #item);
    }
    let item = model.original;
    quote!(#added #item)
}

/// Whether `#[event]` derives `JsonSchema` (feature `json-schema`). The expansion snapshots of
/// the unit tests are of the default expansion, whatever the features; the JSON Schema half is
/// tested through the facade (`tests/schema_docs.rs`, `tests/schema_lock.rs`).
const fn json_schema() -> bool {
    cfg!(all(feature = "json-schema", not(test)))
}

/// The struct with `#[schemars(with = "serde_json::Value")]` on each field serde stores through
/// another type (`with`, `serialize_with`, ...): schemars would read `with = "module"` as a type,
/// and the schema cannot know what the functions write, so such a field is any JSON value. A
/// field with its own `#[schemars(...)]` is left as written.
fn with_undescribed_as_any(model: &ast::Event) -> syn::ItemStruct {
    let mut item = model.original.clone();
    let any = format!("{}::__private::serde_json::Value", &model.krate).replace(' ', "");
    for (field, described) in item.fields.iter_mut().zip(&model.fields) {
        let own = field.attrs.iter().any(|attr| attr.path().is_ident("schemars"));
        if !described.undescribed.is_empty() && !own {
            field.attrs.push(syn::parse_quote!(#[schemars(with = #any)]));
        }
    }
    item
}

fn event_impl(model: &ast::Event, valid: bool) -> TokenStream {
    let ident = model.ident();
    let rust_type = ident.to_string();
    let (name, version) = (&model.name, model.version);
    let aliases = &model.aliases;
    let p = {
        let krate = &model.krate;
        quote!(#krate::__private)
    };
    let upcast = if valid { &model.upcast } else { &Upcast::None };
    let want = version.saturating_sub(1);

    let older = match upcast {
        // Every use of `older` is spanned at it and goes through `Versioned<N-1>`: an older
        // struct of the wrong version, or one that is no event, is one error that says so, and
        // the missing `From` it would also lack is not reported on top of it.
        Upcast::Typed(older) => {
            let older_event = quote_spanned!(older.span()=> <#older as #p::Versioned<#want>>::Event);
            quote_spanned! {older.span()=>
                <#older_event as #p::EventOps>::decode_payload(version, payload)
                    .map(<Self as #p::UpcastFrom<#older_event>>::upcast_from)
            }
        }
        Upcast::Json { functions, .. } => {
            let functions = functions.iter().map(|function| quote_spanned!(function.span()=> #function));
            quote! {
                const STEPS: &[#p::JsonUpcaster] = &[#(#functions),*];
                #p::decode_json_upcast::<Self>(version, payload, #rust_type, #version, STEPS)
            }
        }
        Upcast::None => quote!(::core::result::Result::Err(#p::unsupported_version(version, #version))),
    };

    let upcast_schema = match upcast {
        Upcast::Typed(older) => quote_spanned! {older.span()=>
            #p::Upcast::Typed { from: #p::std::boxed::Box::new(<<#older as #p::Versioned<#want>>::Event as #p::EventOps>::schema()) }
        },
        Upcast::Json { oldest, .. } => quote!(#p::Upcast::Json { oldest: #oldest }),
        Upcast::None => quote!(#p::Upcast::None),
    };

    let name_check = match upcast {
        Upcast::Typed(older) => {
            let older_text = path_text(older);
            let message = format!(
                "`upcast_from = {older_text}` on `{rust_type}`: `{older_text}` must be stored under the type name \"{name}\" \
                 (or one of its aliases); write `#[event(name = \"{name}\", version = {want})]` on `{older_text}`"
            );
            quote_spanned! {older.span()=>
                const _: () = {
                    const OLDER: &str = <<#older as #p::Versioned<#want>>::Event as #p::EventOps>::NAME;
                    ::core::assert!(#p::str_eq(OLDER, #name) || #p::contains(&[#(#aliases),*], OLDER), #message);
                };
            }
        }
        _ => TokenStream::new(),
    };

    let doc = &model.doc;
    let json_schema = if json_schema() {
        quote!(::core::option::Option::Some(#p::json_schema_of::<Self>()))
    } else {
        quote!(::core::option::Option::None)
    };
    let container = schema::container(&p, &model.container);
    let fields = model.fields.iter().map(|field| schema::field(&p, field));

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
                    container: #container,
                    fields: const { &[#(#fields),*] },
                    upcast: #upcast_schema,
                    json_schema: #json_schema,
                }
            }
        }

        #[automatically_derived]
        #[diagnostic::do_not_recommend]
        impl #p::Versioned<#version> for #ident {
            type Event = Self;
        }

        #name_check
    }
}

#[cfg(test)]
mod tests {
    use super::expand;
    use quote::quote;

    fn pretty(tokens: proc_macro2::TokenStream) -> String {
        match syn::parse2::<syn::File>(tokens.clone()) {
            Ok(file) => prettyplease::unparse(&file),
            Err(error) => format!("// does not parse as a file: {error}\n{tokens}"),
        }
    }

    #[test]
    fn a_plain_event() {
        insta::assert_snapshot!(pretty(expand(
            quote!(version = 1),
            quote! {
                /// An account was opened.
                pub struct AccountOpened {
                    /// Who owns it.
                    pub owner: String,
                    pub initial_deposit: u64,
                }
            }
        )));
    }

    #[test]
    fn a_typed_upcast_with_aliases_and_serde_names() {
        insta::assert_snapshot!(pretty(expand(
            quote!(version = 2, upcast_from = MoneyDepositedV1, aliases = ["Paid"]),
            quote! {
                #[derive(Debug)]
                #[serde(rename_all = "camelCase")]
                pub struct MoneyDeposited {
                    pub amount: u64,
                    #[serde(default, rename = "ref")]
                    pub reference_text: Option<String>,
                }
            }
        )));
    }

    #[test]
    fn a_json_chain() {
        insta::assert_snapshot!(pretty(expand(
            quote!(version = 3, upcast_json(v1 = one_to_two, v2 = two_to_three), crate = ::my_es),
            quote! {
                pub struct PriceChanged(pub u64);
            }
        )));
    }

    #[test]
    fn a_mistake_keeps_the_struct_and_a_plain_impl() {
        insta::assert_snapshot!(pretty(expand(
            quote!(version = 2, upcast_json(one_to_two)),
            quote! {
                pub struct PriceChanged {
                    pub cents: u64,
                }
            }
        )));
    }
}
