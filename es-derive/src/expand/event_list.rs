//! Code over an `events(...)` list, shared by every derive that takes one: the event enum with
//! its conversions and `impl EventSet`, the stored-name check, and the dispatch of the enum to
//! one impl per event.
//!
//! Every use of a listed event goes through `<E as EventOps>`, spanned at its name in
//! `events(...)`: a type there that is not an event is then one error (rustc reports the
//! identical ones once), not one per trait the enum needs.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{Ident, Visibility};

use crate::ast::{EventList, ListedEvent};

pub struct Listed<'a> {
    p: &'a TokenStream,
    enum_name: &'a Ident,
    events: Vec<&'a ListedEvent>,
    variants: Vec<&'a Ident>,
    paths: Vec<&'a syn::Path>,
    ops: Vec<TokenStream>,
}

impl<'a> Listed<'a> {
    pub fn new(p: &'a TokenStream, enum_name: &'a Ident, list: &'a EventList) -> Self {
        let events: Vec<&ListedEvent> = list.usable().collect();
        let variants = events.iter().map(|event| &event.variant).collect();
        let paths = events.iter().map(|event| &event.path).collect();
        let ops = events
            .iter()
            .map(|event| {
                let path = &event.path;
                quote_spanned!(event.span()=> <#path as #p::EventOps>)
            })
            .collect();
        Self { p, enum_name, events, variants, paths, ops }
    }

    /// The enum, `Clone`, `PartialEq`, `Debug`, `From<E>`, `IntoEvents` and `EventSet`.
    pub fn event_enum(&self, vis: &Visibility, doc: &str) -> TokenStream {
        let Self { p, enum_name, variants, paths, ops, .. } = self;
        let variant_docs = self.events.iter().map(|event| format!("[`{}`]", event.text));
        let eq_body = match variants.len() {
            0 => quote!(match *self {}),
            1 => quote! {
                match (self, other) {
                    #( (Self::#variants(a), Self::#variants(b)) => #ops::eq_event(a, b), )*
                }
            },
            _ => quote! {
                match (self, other) {
                    #( (Self::#variants(a), Self::#variants(b)) => #ops::eq_event(a, b), )*
                    _ => false,
                }
            },
        };
        let event_set = self.event_set();
        // Retired events get no `IntoEvents`: a command can no longer return them.
        let emitted: Vec<(&Ident, &syn::Path)> =
            self.events.iter().filter(|event| !event.retired).map(|event| (&event.variant, &event.path)).collect();
        let (emit_variants, emit_paths): (Vec<_>, Vec<_>) = emitted.into_iter().unzip();
        quote! {
            #[doc = #doc]
            #vis enum #enum_name {
                #( #[doc = #variant_docs] #variants(#paths), )*
            }

            #[automatically_derived]
            impl ::core::clone::Clone for #enum_name {
                #[inline]
                fn clone(&self) -> Self {
                    match *self {
                        #( Self::#variants(ref event) => Self::#variants(#ops::clone_event(event)), )*
                    }
                }
            }

            #[automatically_derived]
            impl ::core::cmp::PartialEq for #enum_name {
                #[inline]
                fn eq(&self, other: &Self) -> bool {
                    #eq_body
                }
            }

            #[automatically_derived]
            impl ::core::fmt::Debug for #enum_name {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    match *self {
                        #( Self::#variants(ref event) => #ops::fmt_event(event, f), )*
                    }
                }
            }

            #(
                #[automatically_derived]
                impl ::core::convert::From<#paths> for #enum_name {
                    #[inline]
                    fn from(event: #paths) -> Self {
                        Self::#variants(event)
                    }
                }
            )*

            #(
                // `do_not_recommend`: a command returning a non-event is told what a command
                // may return, not shown every event that would do.
                #[automatically_derived]
                #[diagnostic::do_not_recommend]
                impl #p::IntoEvents<#enum_name> for #emit_paths {
                    #[inline]
                    fn extend_into(self, out: &mut ::std::vec::Vec<#enum_name>) {
                        out.push(#enum_name::#emit_variants(self));
                    }
                }
            )*

            #[automatically_derived]
            #[diagnostic::do_not_recommend]
            impl #p::IntoEvents<#enum_name> for #enum_name {
                #[inline]
                fn extend_into(self, out: &mut ::std::vec::Vec<#enum_name>) {
                    out.push(self);
                }
            }

            #event_set
        }
    }

    fn event_set(&self) -> TokenStream {
        let Self { p, enum_name, variants, ops, .. } = self;
        quote! {
            #[automatically_derived]
            impl #p::EventSet for #enum_name {
                #[inline]
                fn event_type(&self) -> &'static str {
                    match *self {
                        #( Self::#variants(_) => #ops::NAME, )*
                    }
                }

                #[inline]
                fn schema_version(&self) -> u32 {
                    match *self {
                        #( Self::#variants(_) => #ops::VERSION, )*
                    }
                }

                fn encode(&self) -> ::core::result::Result<::std::string::String, #p::serde_json::Error> {
                    match *self {
                        #( Self::#variants(ref event) => #ops::encode_event(event), )*
                    }
                }

                #[inline]
                fn decode(event_type: &str, schema_version: u32, payload: &str) -> ::core::result::Result<Self, #p::DecodeErrorKind> {
                    #(
                        if event_type == #ops::NAME {
                            return #ops::decode_payload(schema_version, payload).map(Self::#variants);
                        }
                    )*
                    #(
                        if #p::contains(#ops::ALIASES, event_type) {
                            return #ops::decode_payload(schema_version, payload).map(Self::#variants);
                        }
                    )*
                    ::core::result::Result::Err(#p::DecodeErrorKind::UnknownType { known: <Self as #p::EventSet>::event_types() })
                }

                fn event_types() -> &'static [&'static str] {
                    const NAMES: &[&str] = &[#(#ops::NAME),*];
                    NAMES
                }
            }
        }
    }

    /// `<E as EventOps>::NAME` of each retired event.
    pub fn retired_names(&self) -> impl Iterator<Item = TokenStream> + '_ {
        self.events.iter().zip(&self.ops).filter(|(event, _)| event.retired).map(|(_, ops)| quote!(#ops::NAME))
    }

    /// `<E as EventOps>::schema()` of each event, in order.
    pub fn schemas(&self) -> impl Iterator<Item = TokenStream> + '_ {
        self.ops.iter().map(|ops| quote!(#ops::schema()))
    }

    /// No two events stored under one name: one constant per event after the first, spanned at
    /// it, checking it against those before it (linear in items: a 50-event aggregate compiles
    /// 49 small constants). Its message names the event it clashes with and the name.
    pub fn name_check(&self, owner: &str) -> TokenStream {
        if self.events.len() < 2 {
            return TokenStream::new();
        }
        let p = self.p;
        let table = self.events.iter().zip(&self.ops).map(|(event, ops)| {
            let text = &event.text;
            quote!((#text, #ops::NAME, #ops::ALIASES, #ops::VERSION))
        });
        let checks = self.events.iter().enumerate().skip(1).map(|(index, event)| {
            quote_spanned! {event.span()=>
                const _: () = if let ::core::option::Option::Some(message) = #p::stored_name_clash(#owner, #index, EVENTS) {
                    ::core::panic!("{}", message.as_str())
                };
            }
        });
        quote! {
            const _: () = {
                const EVENTS: &[#p::ListedName] = &[#(#table),*];
                #(#checks)*
            };
        }
    }

    /// `match *event { Enum::Variant(ref event) => <arm>, ... }`, each arm spanned at its event
    /// in `events(...)`: with `<Self as Apply<E>>::apply(self, event)` as the arm, a missing
    /// impl is the trait's `on_unimplemented` sentence at the event's name.
    pub fn dispatch(&self, arm: impl Fn(&ListedEvent) -> TokenStream) -> TokenStream {
        let enum_name = self.enum_name;
        let arms = self.events.iter().map(|event| {
            let variant = &event.variant;
            let body = arm(event);
            quote_spanned!(event.span()=> #enum_name::#variant(ref event) => #body,)
        });
        quote! {
            match *event {
                #(#arms)*
            }
        }
    }
}
