//! `#[es::apply]` on an inherent `impl` block: each method `fn name(&mut self, event: &E)`
//! becomes `impl Apply<E> for Type`, so that all the handlers of an aggregate live in one block
//! and a missing one is still the `Apply<E>` compile error at the event in `events(...)`.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::{FnArg, ImplItem, ItemImpl, Pat, ReturnType, Type};

use crate::ctxt::Ctxt;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let krate = parse_args(&cx, args);
    let block: ItemImpl = match syn::parse2(item.clone()) {
        Ok(block) => block,
        Err(_) => {
            cx.error_at(
                proc_macro2::Span::call_site(),
                "`#[es::apply]` goes on an `impl` block of the aggregate: `#[es::apply] impl BankAccount { fn opened(&mut self, event: &AccountOpened) { ... } }`",
            );
            let errors = cx.check().err().map(|e| e.to_compile_error());
            return quote!(#item #errors);
        }
    };
    if let Some((path, _)) = &block.trait_ {
        cx.error_spanned_by(path, "`#[es::apply]` goes on an inherent `impl Type { ... }` block, not on a trait impl");
    }
    if !block.generics.params.is_empty() {
        cx.error_spanned_by(
            &block.generics,
            "`#[es::apply]` cannot take generic parameters: an aggregate is not generic",
        );
    }
    let p = quote!(#krate::__private);
    let ty = &block.self_ty;
    let mut impls = Vec::new();
    for item in &block.items {
        let ImplItem::Fn(method) = item else {
            cx.error_spanned_by(
                item,
                "only methods `fn name(&mut self, event: &Event)` go in an `#[es::apply]` block; put other items in another `impl`",
            );
            continue;
        };
        let Some((event, valid)) = handler(&cx, method) else { continue };
        if !valid {
            impls.push(quote! {
                impl #p::Apply<#event> for #ty {
                    fn apply(&mut self, _: &#event) {}
                }
            });
            continue;
        }
        let attrs: Vec<&syn::Attribute> = method
            .attrs
            .iter()
            .filter(|attr| {
                ["doc", "cfg", "allow", "expect", "warn", "deny", "inline"]
                    .iter()
                    .any(|name| attr.path().is_ident(name))
            })
            .collect();
        let inline = (!attrs.iter().any(|attr| attr.path().is_ident("inline"))).then(|| quote!(#[inline]));
        let (inputs, block_body) = (&method.sig.inputs, &method.block);
        let fn_token = method.sig.fn_token;
        impls.push(quote_spanned! {method.sig.ident.span()=>
            #[automatically_derived]
            impl #p::Apply<#event> for #ty {
                #(#attrs)*
                #inline
                #fn_token apply(#inputs) #block_body
            }
        });
    }
    match cx.check() {
        Ok(()) => quote!(#(#impls)*),
        Err(errors) => {
            // The valid handlers still become impls, so that a mistake in one does not add a
            // missing-`Apply` error for every event.
            let errors = errors.to_compile_error();
            quote!(#(#impls)* #errors)
        }
    }
}

/// `crate = path`, or nothing.
fn parse_args(cx: &Ctxt, args: TokenStream) -> TokenStream {
    let mut krate = quote!(::es);
    if args.is_empty() {
        return krate;
    }
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            let path: syn::Path = meta.value()?.parse()?;
            krate = path.to_token_stream();
            Ok(())
        } else {
            Err(meta.error("unknown key in `#[es::apply]`; the only one is `crate = path`"))
        }
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        cx.push(error);
    }
    krate
}

/// `E` of `fn name(&mut self, event: &E)`, and whether the method is such a handler (when it
/// is not, the error is reported and the caller emits a stub impl for `E`, so that the mistake
/// does not add a missing-`Apply<E>` error). `None` when no event type can be read.
fn handler<'a>(cx: &Ctxt, method: &'a syn::ImplItemFn) -> Option<(&'a Type, bool)> {
    let sig = &method.sig;
    let shape = "an apply handler is `fn name(&mut self, event: &Event)`";
    let event = match sig.inputs.iter().nth(1) {
        Some(FnArg::Typed(typed)) => match (&*typed.pat, &*typed.ty) {
            (Pat::Ident(_) | Pat::Wild(_), Type::Reference(reference)) if reference.mutability.is_none() => {
                Some(&*reference.elem)
            }
            _ => {
                cx.error_spanned_by(&typed.ty, format!("{shape}: the event is taken by shared reference, `&Event`"));
                return None;
            }
        },
        _ => {
            cx.error_spanned_by(&sig.ident, format!("{shape}: it takes `&mut self` and then the event"));
            return None;
        }
    };
    let mut valid = true;
    let mut fail = |tokens: &dyn ToTokens, what: &str| {
        cx.error_spanned_by(tokens, format!("{shape}: {what}"));
        valid = false;
    };
    if !sig.generics.params.is_empty() || sig.asyncness.is_some() || sig.constness.is_some() {
        fail(&sig.ident, "not generic, async or const");
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        fail(ty, "returning nothing, since applying an event never fails");
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) if matches!(receiver.kind, syn::ReceiverKind::Reference(_, _, Some(_))) => {}
        Some(other) => fail(other, "the first parameter is `&mut self`"),
        None => fail(&sig.ident, "it takes `&mut self` and then the event"),
    }
    if let Some(extra) = sig.inputs.iter().nth(2) {
        fail(extra, "nothing after the event");
    }
    event.map(|event| (event, valid))
}

#[cfg(test)]
mod tests {
    use super::expand;
    use quote::quote;

    #[test]
    fn each_method_becomes_an_apply_impl() {
        let out = expand(
            quote!(),
            quote! {
                impl BankAccount {
                    /// Opening sets the owner.
                    fn opened(&mut self, event: &AccountOpened) {
                        self.owner = event.owner.clone();
                    }
                    fn closed(&mut self, _: &AccountClosed) {
                        self.closed = true;
                    }
                }
            },
        );
        let file: syn::File = syn::parse2(out).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(prettyplease::unparse(&file));
    }

    #[test]
    fn a_wrong_handler_is_an_error_and_the_others_still_expand() {
        let out = expand(
            quote!(),
            quote! {
                impl BankAccount {
                    fn opened(&self, event: &AccountOpened) {}
                    fn closed(&mut self, _: &AccountClosed) {}
                }
            },
        )
        .to_string();
        assert!(out.contains("the first parameter is `&mut self`"), "{out}");
        assert!(out.contains("Apply < AccountClosed >"), "{out}");
    }
}
