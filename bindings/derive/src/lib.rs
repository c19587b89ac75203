//! `#[derive(Record)]` and `#[derive(Enum)]` for crmsync's types, behind its `uniffi` feature.
//!
//! uniffi puts a type in the namespace of the crate whose code implements its FFI traits, so a
//! `#[derive(uniffi::Record)]` in crmsync would generate a second Kotlin package, Swift module
//! and Python module next to the bindings' `crmsync` one; the derive's output (unsafe trait
//! impls, `no_mangle` statics) would also land in a crate that forbids unsafe code. uniffi's
//! answer is the remote type: `#[uniffi::remote(Record)]` on a copy of the definition, written
//! in the bindings crate. These derives write that copy: each emits a hidden, exported
//! `macro_rules!` named `uniffi_remote_<Type>` whose expansion is the type's definition,
//! doc comments included, under `#[uniffi::remote(..)]`. The bindings crate invokes it
//! (`crmsync::uniffi_remote_Record!();`) where the field types are in scope, so the docs of
//! the core type are the docs of the generated API, and a field added or changed in the core
//! shows up in the bindings (or fails to compile) instead of drifting.
//!
//! The copy keeps `///` docs, `#[uniffi(..)]` attributes (defaults, foreign names, written in
//! the core as `#[cfg_attr(feature = "uniffi", uniffi(..))]`) and `#[non_exhaustive]`; other
//! attributes (serde, derives) are dropped. `crate::` paths become `$crate::`.

use proc_macro::TokenStream;
use proc_macro2::{Group, Ident, Punct, Spacing, Span, TokenStream as Tokens, TokenTree};
use quote::{format_ident, quote};
use syn::{Attribute, Data, DeriveInput, Fields, parse_macro_input};

/// Exports a struct's definition for `#[uniffi::remote(Record)]` in the bindings crate.
#[proc_macro_derive(Record, attributes(uniffi))]
pub fn record(input: TokenStream) -> TokenStream {
    remote(parse_macro_input!(input), "Record")
}

/// Exports an enum's definition for `#[uniffi::remote(Enum)]` in the bindings crate.
#[proc_macro_derive(Enum, attributes(uniffi))]
pub fn enum_(input: TokenStream) -> TokenStream {
    remote(parse_macro_input!(input), "Enum")
}

fn remote(mut item: DeriveInput, kind: &str) -> TokenStream {
    keep_uniffi_attrs(&mut item.attrs);
    match &mut item.data {
        Data::Struct(s) => fields(&mut s.fields),
        Data::Enum(e) => e.variants.iter_mut().for_each(|v| {
            keep_uniffi_attrs(&mut v.attrs);
            fields(&mut v.fields);
        }),
        Data::Union(u) => {
            return syn::Error::new_spanned(u.union_token, "unions cannot cross the FFI")
                .into_compile_error()
                .into();
        }
    }
    let name = format_ident!("uniffi_remote_{}", item.ident);
    let kind = Ident::new(kind, Span::call_site());
    let definition = dollar_crate(quote!(#item));
    quote! {
        #[doc(hidden)]
        #[macro_export]
        macro_rules! #name {
            () => {
                #[::uniffi::remote(#kind)]
                #definition
            };
        }
    }
    .into()
}

fn fields(fields: &mut Fields) {
    fields
        .iter_mut()
        .for_each(|f| keep_uniffi_attrs(&mut f.attrs));
}

/// Keeps what uniffi reads: docs, `#[uniffi(..)]` and `#[non_exhaustive]`.
fn keep_uniffi_attrs(attrs: &mut Vec<Attribute>) {
    attrs.retain(|a| {
        let path = a.path();
        path.is_ident("doc") || path.is_ident("uniffi") || path.is_ident("non_exhaustive")
    });
}

/// `crate` means crmsync where the definition is written; in the bindings crate, `$crate` does.
fn dollar_crate(tokens: Tokens) -> Tokens {
    tokens
        .into_iter()
        .flat_map(|tree| match tree {
            TokenTree::Ident(ident) if ident == "crate" => {
                vec![Punct::new('$', Spacing::Alone).into(), ident.into()]
            }
            TokenTree::Group(group) => {
                let mut inner = Group::new(group.delimiter(), dollar_crate(group.stream()));
                inner.set_span(group.span());
                vec![inner.into()]
            }
            other => vec![other],
        })
        .collect()
}
