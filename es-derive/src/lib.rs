//! The macros of [es](https://docs.rs/es): `#[event]`, `#[derive(Aggregate)]` and
//! `#[es::apply]`. Use them through the facade crate `es`, which re-exports them; their full
//! documentation, with every key, is on the re-exports there.
//!
//! Each macro runs parse → model → check → expand: `attr` and `serde_attr` read the helper and
//! serde attributes, `ast` builds the one model of the input, `check` validates it once, and
//! the modules of `expand` write the code from the model alone (`expand::event_list` is shared
//! by every derive over a list of events). A mistake becomes a `compile_error!` at the
//! offending tokens, next to the `fallback` expansion, so that one mistake does not cascade.

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fallback;
mod serde_attr;

use proc_macro::TokenStream;

/// Makes a struct an event. Documented, with every key, at `es::event`.
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::event::expand(args.into(), item.into()).into()
}

/// Implements `Aggregate`, its event enum and the apply dispatch. Documented, with every key,
/// at `es::Aggregate`.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    expand::aggregate::expand(input.into()).into()
}

/// Turns each method of an `impl` block into an `impl Apply<E>`. Documented at `es::apply`.
#[proc_macro_attribute]
pub fn apply(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::apply::expand(args.into(), item.into()).into()
}
