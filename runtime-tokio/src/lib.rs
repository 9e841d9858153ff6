//! The tokio adapter for `kubecast-core`. Empty until the recorder-upload issue (#4) lands.
