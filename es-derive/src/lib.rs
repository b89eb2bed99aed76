//! The macros of [es](https://docs.rs/es): `#[event]` and `#[derive(Aggregate)]`.
//!
//! Use them through the facade crate `es`; its documentation describes every key. Each macro
//! runs parse → check → expand: `attr` reads the helper attributes, `ast` builds the model,
//! `check` validates what needs several attributes at once, `expand` writes the code. Every
//! mistake becomes a `compile_error!` at the offending tokens, next to a best-effort expansion
//! so that one mistake does not cascade into many.

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;

use proc_macro::TokenStream;

/// Makes a struct an event: see `es::event`.
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::event::expand(args.into(), item.into()).into()
}

/// Implements `es::Aggregate`: see `es::Aggregate`.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    expand::aggregate::expand(input.into()).into()
}
