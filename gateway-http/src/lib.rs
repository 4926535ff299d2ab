//! Origin HTTP server (in progress).
