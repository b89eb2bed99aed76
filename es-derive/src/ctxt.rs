//! Collects every error of one macro call, so the user sees all mistakes at once.

use proc_macro2::TokenStream;
use quote::ToTokens;
use std::fmt::Display;

#[derive(Default)]
pub struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    pub fn error(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    pub fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// The errors as `compile_error!` invocations (empty when there were none).
    pub fn into_compile_errors(self) -> TokenStream {
        self.errors.into_iter().map(|error| error.to_compile_error()).collect()
    }
}
