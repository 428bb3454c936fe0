//! The shared-token check: an interceptor on the server, and the one that
//! adds the token on the client. A call that passes the check marks its
//! connection proven for the port's bounds (see [`crate::listener`]): idle
//! connections and calls without the token cannot keep it out.

use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::listener::ConnHandle;

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
            prove(&req);
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(t) if same(t.as_bytes(), want.as_bytes()) => {
                prove(&req);
                Ok(req)
            }
            Some(_) => Err(Status::unauthenticated("wrong token")),
            None => Err(Status::unauthenticated(
                "missing token (authorization: Bearer <token>)",
            )),
        }
    }
}

/// Marks the call's connection as an operator's (see the module doc).
fn prove(req: &Request<()>) {
    if let Some(c) = req.extensions().get::<ConnHandle>() {
        c.mark_proven();
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
    fn only_a_call_with_the_token_proves_its_connection() {
        let call = |check: &mut CheckToken, header| {
            let conn = ConnHandle::detached();
            let mut r = with(header);
            r.extensions_mut().insert(conn.clone());
            let _ = check.call(r);
            conn.is_proven()
        };
        let mut check = CheckToken::new(Some("abc"));
        assert!(call(&mut check, Some("Bearer abc")));
        assert!(!call(&mut check, Some("Bearer abd")));
        assert!(!call(&mut check, None));
        // Without a token every call is an operator's.
        assert!(call(&mut CheckToken::new(None), None));
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
