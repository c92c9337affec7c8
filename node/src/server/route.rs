//! The APIs on the S3 port that are not S3: s3s takes one custom route, so this one hands each
//! request to the API it belongs to (the admin API under its prefix, STS on `POST /` forms).

use hyper::{HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::{Body, S3Request, S3Response, S3Result};

use crate::admin::AdminRoute;
use crate::sts::StsRoute;

pub struct Routes {
    pub admin: AdminRoute,
    pub sts: StsRoute,
    pub metrics: super::metrics::guard::MetricsRoute,
}

impl Routes {
    /// The route for a request, by the same test s3s made when it chose this one.
    fn pick(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> &dyn S3Route {
        if crate::sts::is_sts_request(method, uri, headers) {
            &self.sts
        } else if super::metrics::guard::scope(uri.path()).is_some() {
            &self.metrics
        } else {
            &self.admin
        }
    }
}

#[async_trait::async_trait]
impl S3Route for Routes {
    fn is_match(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        extensions: &mut hyper::http::Extensions,
    ) -> bool {
        self.sts.is_match(method, uri, headers, extensions)
            || self.metrics.is_match(method, uri, headers, extensions)
            || self.admin.is_match(method, uri, headers, extensions)
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        self.pick(&req.method, &req.uri, &req.headers)
            .check_access(req)
            .await
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let route = self.pick(&req.method, &req.uri, &req.headers);
        route.call(req).await
    }
}
