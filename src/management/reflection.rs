//! gRPC server reflection for the management port (v1 and v1alpha).
//!
//! Written here rather than taken from `tonic-reflection`'s server, which
//! ends the stream at the first unknown symbol (the protocol answers
//! errors in-band, with an `ErrorResponse`, and the stream goes on), lists
//! every service of a descriptor set (ours also holds Raft's, which this
//! port does not serve), and names the health service's file
//! `health.proto`, so stock clients that carry the standard
//! `grpc/health/v1/health.proto` cannot load it beside their own.
//!
//! The [`Index`] holds only the files that define a service this port
//! serves, and their dependencies.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

use super::{FILE_DESCRIPTOR_SET, SERVICE_NAME};

/// The services the management port serves.
const SERVED: [&str; 4] = [
    SERVICE_NAME,
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The standard file name of the health service.
const HEALTH_FILE: &str = "grpc/health/v1/health.proto";

/// gRPC status codes used in error responses.
const INVALID_ARGUMENT: i32 = 3;
const NOT_FOUND: i32 = 5;
const UNIMPLEMENTED: i32 = 12;

/// What reflection can answer: files, symbols and served services.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Encoded `FileDescriptorProto` by file name.
    files: BTreeMap<String, Vec<u8>>,
    /// Direct dependencies by file name.
    deps: BTreeMap<String, Vec<String>>,
    /// Fully qualified symbol (message, enum, service, method) → file.
    symbols: BTreeMap<String, String>,
    services: Vec<String>,
}

/// An in-band error: a gRPC status code and a message.
type Refusal = (i32, String);

impl Index {
    /// The index of the management port's services.
    pub(crate) fn management() -> Result<Index, prost::DecodeError> {
        let mut all: Vec<FileDescriptorProto> = Vec::new();
        for set in [
            FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            all.extend(FileDescriptorSet::decode(set)?.file);
        }
        for f in &mut all {
            if f.package() == "grpc.health.v1" {
                f.name = Some(HEALTH_FILE.to_string());
            }
        }
        Ok(Index::of(all, &SERVED))
    }

    /// The files of `all` that define a service in `served`, with their
    /// dependencies.
    fn of(all: Vec<FileDescriptorProto>, served: &[&str]) -> Index {
        let by_name: BTreeMap<String, FileDescriptorProto> =
            all.into_iter().map(|f| (f.name().to_string(), f)).collect();
        let mut index = Index::default();
        let mut wanted: Vec<String> = by_name
            .values()
            .filter(|f| {
                f.service
                    .iter()
                    .any(|s| served.contains(&qualify(f.package(), s.name()).as_str()))
            })
            .map(|f| f.name().to_string())
            .collect();
        let mut seen = BTreeSet::new();
        while let Some(name) = wanted.pop() {
            let Some(f) = by_name.get(&name).filter(|_| seen.insert(name.clone())) else {
                continue;
            };
            wanted.extend(f.dependency.iter().cloned());
            index.add(f, served);
        }
        index.services.sort();
        index
    }

    fn add(&mut self, f: &FileDescriptorProto, served: &[&str]) {
        let name = f.name().to_string();
        let pkg = f.package();
        for m in &f.message_type {
            self.add_message(pkg, m, &name);
        }
        for e in &f.enum_type {
            self.symbols.insert(qualify(pkg, e.name()), name.clone());
        }
        for s in &f.service {
            let full = qualify(pkg, s.name());
            for m in &s.method {
                self.symbols
                    .insert(format!("{full}.{}", m.name()), name.clone());
            }
            if served.contains(&full.as_str()) {
                self.services.push(full.clone());
            }
            self.symbols.insert(full, name.clone());
        }
        self.deps.insert(name.clone(), f.dependency.clone());
        self.files.insert(name, f.encode_to_vec());
    }

    fn add_message(&mut self, scope: &str, m: &DescriptorProto, file: &str) {
        let full = qualify(scope, m.name());
        for nested in &m.nested_type {
            self.add_message(&full, nested, file);
        }
        for e in &m.enum_type {
            self.symbols
                .insert(qualify(&full, e.name()), file.to_string());
        }
        self.symbols.insert(full, file.to_string());
    }

    /// `name` and its transitive dependencies, encoded, the file first.
    fn file(&self, name: &str) -> Result<Vec<Vec<u8>>, Refusal> {
        if !self.files.contains_key(name) {
            return Err((NOT_FOUND, format!("file {name:?} is not served here")));
        }
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_string()];
        while let Some(n) = todo.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some(bytes) = self.files.get(&n) {
                out.push(bytes.clone());
            }
            todo.extend(self.deps.get(&n).into_iter().flatten().cloned());
        }
        Ok(out)
    }

    fn symbol(&self, symbol: &str) -> Result<Vec<Vec<u8>>, Refusal> {
        let symbol = symbol.trim_start_matches('.');
        match self.symbols.get(symbol) {
            Some(file) => self.file(file),
            None => Err((NOT_FOUND, format!("symbol {symbol:?} is not served here"))),
        }
    }

    /// The names of the services served.
    pub(crate) fn services(&self) -> &[String] {
        &self.services
    }
}

fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

/// The reflection service of one protocol version (`v1`, `v1alpha`): the
/// two are the same messages in two packages.
macro_rules! reflection_service {
    ($version:ident) => {
        /// Server reflection, answering errors in-band.
        pub(crate) mod $version {
            use std::sync::Arc;

            use futures::stream::{BoxStream, StreamExt as _};
            use tonic::{Request, Response, Status, Streaming};
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest as Req;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse as Resp;
            pub(crate) use tonic_reflection::pb::$version::server_reflection_server::ServerReflectionServer;
            use tonic_reflection::pb::$version::server_reflection_server::ServerReflection;
            use tonic_reflection::pb::$version::{
                ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse,
                ListServiceResponse, ServerReflectionRequest, ServerReflectionResponse,
                ServiceResponse,
            };

            use super::{Index, INVALID_ARGUMENT, UNIMPLEMENTED};

            /// The service over a shared [`Index`].
            #[derive(Debug, Clone)]
            pub(crate) struct Reflection(pub(crate) Arc<Index>);

            fn answer(index: &Index, req: ServerReflectionRequest) -> ServerReflectionResponse {
                let files = |r: Result<Vec<Vec<u8>>, super::Refusal>| {
                    r.map(|file_descriptor_proto| {
                        Resp::FileDescriptorResponse(FileDescriptorResponse {
                            file_descriptor_proto,
                        })
                    })
                };
                let out = match req.message_request.clone() {
                    None => Err((INVALID_ARGUMENT, "empty reflection request".to_string())),
                    Some(Req::FileByFilename(f)) => files(index.file(&f)),
                    Some(Req::FileContainingSymbol(s)) => files(index.symbol(&s)),
                    Some(Req::FileContainingExtension(_)) => {
                        Err((UNIMPLEMENTED, "extensions are not supported".to_string()))
                    }
                    // grpcurl asks this of every message and expects an
                    // answer: there are no extensions.
                    Some(Req::AllExtensionNumbersOfType(t)) => {
                        Ok(Resp::AllExtensionNumbersResponse(ExtensionNumberResponse {
                            base_type_name: t,
                            extension_number: Vec::new(),
                        }))
                    }
                    Some(Req::ListServices(_)) => {
                        Ok(Resp::ListServicesResponse(ListServiceResponse {
                            service: index
                                .services()
                                .iter()
                                .map(|name| ServiceResponse { name: name.clone() })
                                .collect(),
                        }))
                    }
                };
                let message_response = match out {
                    Ok(r) => r,
                    Err((error_code, error_message)) => Resp::ErrorResponse(ErrorResponse {
                        error_code,
                        error_message,
                    }),
                };
                ServerReflectionResponse {
                    valid_host: req.host.clone(),
                    original_request: Some(req),
                    message_response: Some(message_response),
                }
            }

            #[tonic::async_trait]
            impl ServerReflection for Reflection {
                type ServerReflectionInfoStream =
                    BoxStream<'static, Result<ServerReflectionResponse, Status>>;

                async fn server_reflection_info(
                    &self,
                    req: Request<Streaming<ServerReflectionRequest>>,
                ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
                    let index = self.0.clone();
                    let answers = req
                        .into_inner()
                        .map(move |r| r.map(|r| answer(&index, r)))
                        .boxed();
                    Ok(Response::new(answers))
                }
            }
        }
    };
}

reflection_service!(v1);
reflection_service!(v1alpha);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_services_with_standard_file_names() {
        let index = Index::management().expect("descriptor sets decode");
        assert_eq!(index.services(), {
            let mut s: Vec<String> = SERVED.iter().map(|s| s.to_string()).collect();
            s.sort();
            s
        });
        assert!(index.symbol("clusterfunk.v1.raft.Raft").is_err());
        assert!(index.file("clusterfunk/v1/raft.proto").is_err());
        let health = index.symbol("grpc.health.v1.Health").expect("health");
        let f = FileDescriptorProto::decode(health[0].as_slice()).expect("decode");
        assert_eq!(f.name(), HEALTH_FILE);
        assert!(index.file(HEALTH_FILE).is_ok());
        let m = index
            .symbol(&format!("{SERVICE_NAME}.ListNodes"))
            .expect("method");
        let f = FileDescriptorProto::decode(m[0].as_slice()).expect("decode");
        assert_eq!(f.name(), "clusterfunk/v1/management.proto");
        assert_eq!(index.symbol("no.such.Thing").unwrap_err().0, NOT_FOUND);
    }
}
