//! Test support for the gateway workspace (not published).
//!
//! - [`conformance`]: the application every interop suite runs, over every
//!   protocol, behind every web server;
//! - [`webserver`] (CGI), [`frontend_fastcgi`], [`frontend_scgi`],
//!   [`frontend_http`], [`frontend_uwsgi`]: start real web servers (nginx,
//!   Apache httpd, lighttpd, Caddy, HAProxy) from the configurations in
//!   `examples/webservers/`, with the application behind them;
//! - [`cases`]: the cases every suite runs behind every front end;
//! - [`http_client`]: a small blocking HTTP/1.1 client that reports exactly
//!   what came over the wire, truncation included.

pub mod cases;
pub mod conformance;
pub mod frontend_fastcgi;
pub mod frontend_http;
pub mod frontend_offload;
pub mod frontend_scgi;
pub mod frontend_uwsgi;
pub mod http_client;
pub mod webserver;
