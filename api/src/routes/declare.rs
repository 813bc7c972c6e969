//! [`Routes`]: the one way a route gets mounted, with its access recorded and its OpenAPI
//! collected. It lives in a module of its own so that its fields are private to it, not to the
//! whole `routes` tree: a resource module cannot reach past [`Routes::route`] and
//! [`Routes::asset`].

use std::collections::BTreeMap;

use axum::handler::Handler;
use axum::http::Method;
use utoipa::openapi::path::PathItem;
use utoipa::openapi::{OpenApi, RefOr, Schema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use crate::permissions::{Access, Entry};
use crate::AppState;

/// Routes with who may call each, as a module declares them.
#[derive(Default)]
pub struct Routes {
    router: OpenApiRouter<AppState>,
    table: Vec<Entry>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Mounts the handlers of one `routes!(..)`, documented, for the callers `access` allows.
    ///
    /// # Panics
    ///
    /// When the handlers have different paths: utoipa-axum would mount each at every path.
    pub fn route(mut self, access: Access, handlers: UtoipaMethodRouter<AppState>) -> Self {
        let (_, paths, _) = &handlers;
        let mut declared = paths.paths.iter();
        let (Some((path, item)), None) = (declared.next(), declared.next()) else {
            panic!(
                "one `routes!` mounts one path; got {:?}",
                paths.paths.keys().collect::<Vec<_>>()
            );
        };
        self.table.extend(methods(item).map(|method| Entry {
            method,
            path: path.clone(),
            access,
        }));
        one_schema_per_name(
            self.router.get_openapi(),
            handlers.0.iter().map(|(name, schema)| (name, schema)),
        );
        self.router = self.router.routes(handlers);
        self
    }

    /// Mounts a file served as it is at `GET path`: no API operation, so not documented.
    pub fn asset<H, T>(mut self, access: Access, path: &str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.table.push(Entry {
            method: Method::GET,
            path: path.to_owned(),
            access,
        });
        self.router = self.router.route(path, axum::routing::get(handler));
        self
    }

    pub(super) fn merge(mut self, other: Routes) -> Self {
        one_schema_per_name(
            self.router.get_openapi(),
            other
                .router
                .get_openapi()
                .components
                .iter()
                .flat_map(|c| &c.schemas),
        );
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    pub(super) fn into_parts(self) -> (OpenApiRouter<AppState>, Vec<Entry>) {
        (self.router, self.table)
    }
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// Refuses two types documented under one schema name: the document would describe one of them
/// wrongly, and which one would depend on the order of registration.
///
/// # Panics
///
/// When `new` gives a name a schema other than the one `known` (or `new` itself) gives it.
fn one_schema_per_name<'a>(
    known: &'a OpenApi,
    new: impl IntoIterator<Item = (&'a String, &'a RefOr<Schema>)>,
) {
    let mut seen: BTreeMap<&String, &RefOr<Schema>> =
        known.components.iter().flat_map(|c| &c.schemas).collect();
    for (name, schema) in new {
        if seen
            .insert(name, schema)
            .is_some_and(|other| other != schema)
        {
            panic!(
                "two types are documented as schema `{name}`; rename one with #[schema(as = ..)]"
            );
        }
    }
}

/// The methods a path item has operations for.
fn methods(item: &PathItem) -> impl Iterator<Item = Method> {
    [
        (Method::GET, item.get.is_some()),
        (Method::PUT, item.put.is_some()),
        (Method::POST, item.post.is_some()),
        (Method::DELETE, item.delete.is_some()),
        (Method::OPTIONS, item.options.is_some()),
        (Method::HEAD, item.head.is_some()),
        (Method::PATCH, item.patch.is_some()),
        (Method::TRACE, item.trace.is_some()),
    ]
    .into_iter()
    .filter_map(|(method, declared)| declared.then_some(method))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::routes;

    #[utoipa::path(get, path = "/one")]
    async fn one() {}

    #[utoipa::path(post, path = "/two")]
    async fn two() {}

    #[test]
    #[should_panic(expected = "one `routes!` mounts one path")]
    fn handlers_of_two_paths_cannot_share_a_declaration() {
        let _ = Routes::new().route(Access::Public, routes!(one, two));
    }

    mod first {
        #[derive(utoipa::ToSchema)]
        #[schema(as = Clash)]
        #[allow(dead_code)]
        pub struct Body {
            pub reason: String,
        }

        #[utoipa::path(post, path = "/first", request_body = Body)]
        pub async fn handler() {}
    }

    mod second {
        #[derive(utoipa::ToSchema)]
        #[schema(as = Clash)]
        #[allow(dead_code)]
        pub struct Body {
            pub count: u32,
        }

        #[utoipa::path(post, path = "/second", request_body = Body)]
        pub async fn handler() {}
    }

    #[test]
    #[should_panic(expected = "two types are documented as schema `Clash`")]
    fn two_types_cannot_be_documented_under_one_name_in_a_module() {
        let _ = Routes::new()
            .route(Access::Public, routes!(first::handler))
            .route(Access::Public, routes!(second::handler));
    }

    #[test]
    #[should_panic(expected = "two types are documented as schema `Clash`")]
    fn two_types_cannot_be_documented_under_one_name_across_modules() {
        let _ = Routes::new()
            .route(Access::Public, routes!(first::handler))
            .merge(Routes::new().route(Access::Public, routes!(second::handler)));
    }

    #[test]
    fn a_declaration_records_each_method_with_its_access() {
        let routes = Routes::new()
            .route(crate::permissions::ADMINS, routes!(one))
            .route(Access::AnyUser, routes!(first::handler));
        assert_eq!(
            routes.table,
            [
                Entry {
                    method: Method::GET,
                    path: "/one".to_owned(),
                    access: crate::permissions::ADMINS,
                },
                Entry {
                    method: Method::POST,
                    path: "/first".to_owned(),
                    access: Access::AnyUser,
                },
            ]
        );
    }
}
