//! The AWS backends' words and keys in a build without the `aws` feature: a config naming
//! one is refused at load (78) with the reason, rather than as an unknown backend.

/// The options of both AWS backends, read only to be refused.
macro_rules! unbuilt {
    ($module:ident, $word:literal) => {
        pub(crate) mod $module {
            use std::sync::Arc;

            use crate::backend::Backend;

            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            #[allow(dead_code)]
            pub struct Options {
                region: Option<serde::de::IgnoredAny>,
                profile: Option<serde::de::IgnoredAny>,
                endpoint: Option<serde::de::IgnoredAny>,
                version_stage: Option<serde::de::IgnoredAny>,
                version_id: Option<serde::de::IgnoredAny>,
            }

            impl crate::backend::Options for Options {
                fn build(self, _root: &str) -> Result<Arc<dyn Backend>, String> {
                    Err(concat!(
                        "backend `",
                        $word,
                        "`: this mxm-secrets was built without the `aws` feature; rebuild it with \
                         `cargo install mxm-secrets` (the feature is on by default)"
                    )
                    .to_owned())
                }
            }
        }
    };
}

unbuilt!(secrets_manager, "aws_secrets_manager");
unbuilt!(ssm, "aws_ssm");
