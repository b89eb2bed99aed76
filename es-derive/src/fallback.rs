//! What is emitted when the input is wrong: the user's item (and, where the model is still
//! usable, the expansion of its valid parts with stand-ins) beside the errors, so that one
//! mistake does not cascade into errors at every use of the item.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

use crate::ast::{Aggregate, Event, Projection};
use crate::expand;

/// `#[event]` on a struct with errors: the struct with its derives and an `impl Event` that
/// reads only its own version (no upcasting, no chain checks).
pub fn event(model: &Event, errors: &syn::Error) -> TokenStream {
    let expanded = expand::event::tokens(model, false);
    let errors = errors.to_compile_error();
    quote!(#expanded #errors)
}

/// Any other item under `#[event]`: kept as it was.
pub fn item(item: &impl ToTokens, errors: &syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    quote!(#item #errors)
}

/// `#[derive(Aggregate)]` with errors: nothing for a union or a generic type (an
/// `impl Aggregate` would only add errors about what they lack), otherwise the expansion of the
/// usable events with a stand-in id.
pub fn aggregate(model: &Aggregate, errors: &syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    if matches!(model.original.data, syn::Data::Union(_)) || model.generic() {
        return errors;
    }
    let expanded = expand::aggregate::tokens(model);
    quote!(#expanded #errors)
}

/// `#[derive(Projection)]` with errors: nothing for a generic type, otherwise the expansion of
/// the usable events, so that the handlers written for them are still checked.
pub fn projection(model: &Projection, errors: &syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    if model.generic() {
        return errors;
    }
    let expanded = expand::projection::tokens(model);
    quote!(#expanded #errors)
}
