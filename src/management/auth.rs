//! The shared-token check: an interceptor on the server, and the one that
//! adds the token on the client.

use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Server side: refuses calls without `authorization: Bearer <token>`.
#[derive(Clone)]
pub(crate) struct CheckToken {
    token: Option<Arc<str>>,
}

impl CheckToken {
    pub(crate) fn new(token: Option<&str>) -> Self {
        CheckToken {
            token: token.map(Arc::from),
        }
    }
}

impl Interceptor for CheckToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(want) = &self.token else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(t) if same(t.as_bytes(), want.as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated("wrong token")),
            None => Err(Status::unauthenticated(
                "missing token (authorization: Bearer <token>)",
            )),
        }
    }
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Client side: adds the token to every call.
#[derive(Clone)]
pub(crate) struct AddToken {
    value: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl AddToken {
    pub(crate) fn new(token: Option<&str>) -> Result<Self, super::ManagementError> {
        let value = token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| super::ManagementError::Token("it must be printable ASCII".into()))
            })
            .transpose()?;
        Ok(AddToken { value })
    }
}

impl Interceptor for AddToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.value {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(header: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(h) = header {
            r.metadata_mut()
                .insert("authorization", h.parse().expect("ascii"));
        }
        r
    }

    #[test]
    fn token_is_required_only_when_configured() {
        let mut open = CheckToken::new(None);
        assert!(open.call(with(None)).is_ok());
        let mut check = CheckToken::new(Some("abc"));
        assert!(check.call(with(Some("Bearer abc"))).is_ok());
        for bad in [None, Some("Bearer abd"), Some("abc"), Some("Bearer ab")] {
            let e = check.call(with(bad)).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }

    #[test]
    fn client_adds_the_bearer_header() {
        let mut add = AddToken::new(Some("abc")).expect("token");
        let r = add.call(Request::new(())).expect("ok");
        assert_eq!(
            r.metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer abc")
        );
        assert!(AddToken::new(Some("bad\ntoken")).is_err());
    }
}
