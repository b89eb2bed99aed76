//! `#[derive(Projection)]`: the selection (each listed event's stored names, and its stream
//! type for `in Aggregate`), the dispatch of a stored record to the projection's `Handle<E>`,
//! and the compile-time check that no two listed events read the same records.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::ast;
use crate::attr;
use crate::check;
use crate::ctxt::Ctxt;
use crate::fallback;

pub fn expand(input: TokenStream) -> TokenStream {
    let input: syn::DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let cx = Ctxt::new();
    let args = attr::parse_projection_args(&cx, &input.attrs);
    let model = ast::Projection::from_syn(args, &input);
    check::projection(&cx, &model);
    match cx.check() {
        Ok(()) => tokens(&model),
        Err(errors) => fallback::projection(&model, &errors),
    }
}

pub fn tokens(model: &ast::Projection) -> TokenStream {
    let krate = &model.krate;
    let p = quote!(#krate::__private);
    let ident = model.ident();
    let (name, version) = (&model.name, model.version);
    let events: Vec<&ast::ListedEvent> = model.events.usable().collect();

    // Every use of a listed event goes through `EventOps`, spanned at its name: a type that is
    // not an event is one error there.
    let selection = events.iter().map(|event| {
        let (path, text) = (&event.path, &event.text);
        let stream = match &event.stream {
            Some(aggregate) => quote_spanned!(aggregate_span(aggregate)=>
                ::core::option::Option::Some(<#aggregate as #p::StreamOf>::TYPE)),
            None => quote!(::core::option::Option::None),
        };
        let ops = quote_spanned!(event.span()=> <#path as #p::EventOps>);
        quote! {
            #p::Selected { rust_type: #text, stream_type: #stream, event_type: #ops::NAME, aliases: #ops::ALIASES }
        }
    });
    // Fully qualified and spanned at the event: a missing handler is `Handle`'s sentence there.
    let arms = events.iter().enumerate().map(|(index, event)| {
        let path = &event.path;
        quote_spanned! {event.span()=>
            ::core::option::Option::Some(#index) => {
                let event = #p::decode_listed::<#path>(record).map_err(#p::DispatchError::Decode)?;
                <Self as #p::Handle<#path>>::handle(self, &event).map_err(#p::DispatchError::Handler)?;
                ::core::result::Result::Ok(true)
            }
        }
    });
    let owner = ident.to_string();
    let checks = events.iter().enumerate().skip(1).map(|(index, event)| {
        quote_spanned! {event.span()=>
            const _: () = if let ::core::option::Option::Some(message) =
                #p::selection_clash(#owner, #index, <#ident as #p::Projection>::SELECTION)
            {
                ::core::panic!("{}", message.as_str())
            };
        }
    });

    quote! {
        #[automatically_derived]
        impl #p::Projection for #ident {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            const SELECTION: &'static [#p::Selected] = &[#(#selection),*];

            fn dispatch(&mut self, record: &#p::StoredEvent) -> ::core::result::Result<bool, #p::DispatchError> {
                match #p::selected_index(<Self as #p::Projection>::SELECTION, record) {
                    #(#arms)*
                    _ => ::core::result::Result::Ok(false),
                }
            }
        }

        const _: () = {
            #(#checks)*
        };
    }
}

fn aggregate_span(aggregate: &syn::Path) -> proc_macro2::Span {
    syn::spanned::Spanned::span(aggregate)
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
    fn a_projection_over_two_aggregates() {
        insta::assert_snapshot!(pretty(expand(quote! {
            #[projection(name = "balances", version = 2, events(AccountOpened in BankAccount, shop::Opened in Shop, MoneyDeposited))]
            pub struct Balances {
                by_owner: HashMap<String, u64>,
            }
        })));
    }
}
