//! A minimal OTLP/HTTP receiver: a real TCP server on loopback that answers every request with
//! 200 and hands the requests to the test, plus helpers to decode the protobuf payload.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, NumberDataPoint, metric, number_data_point};
use prost::Message as _;

/// One HTTP request as the receiver saw it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn decode(&self) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest::decode(self.body.as_slice()).expect("body is an OTLP ExportMetricsServiceRequest")
    }
}

/// The receiver's address and the requests it received.
pub struct Collector {
    pub base_url: String,
    pub requests: Receiver<Request>,
}

impl Collector {
    /// The next request, or a panic if none arrives in time; the wait is bounded so a broken
    /// exporter fails the test instead of hanging it.
    pub fn next(&self) -> Request {
        self.requests.recv_timeout(Duration::from_secs(20)).expect("a request reached the receiver in time")
    }

    /// Next request whose payload contains `metric_name`, skipping exports that raced ahead
    /// of the instrument's registration.
    pub fn next_with(&self, metric_name: &str) -> (Request, ExportMetricsServiceRequest) {
        loop {
            let request = self.next();
            let decoded = request.decode();
            if find_metric(&decoded, metric_name).is_some() {
                return (request, decoded);
            }
        }
    }
}

/// Starts the receiver on 127.0.0.1 with an OS-chosen port.
pub fn start_receiver() -> Collector {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = mpsc::channel();
    // The accept loop lives until the test process exits; it only ever talks to this test.
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let tx = tx.clone();
            thread::spawn(move || serve(stream, &tx));
        }
    });
    Collector { base_url: format!("http://{addr}"), requests: rx }
}

/// Serves keep-alive requests on one connection until the client closes it.
fn serve(stream: TcpStream, tx: &Sender<Request>) {
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length =
            headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse::<usize>().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        // An empty protobuf body is a valid ExportMetricsServiceResponse (no partial success).
        let response = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
        let _ = tx.send(Request { method, path, headers, body });
    }
}

pub fn find_metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    req.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics).find(|m| m.name == name)
}

pub fn string_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

pub fn resource_attr<'a>(req: &'a ExportMetricsServiceRequest, key: &str) -> Option<&'a str> {
    req.resource_metrics.iter().filter_map(|rm| rm.resource.as_ref()).find_map(|r| string_attr(&r.attributes, key))
}

pub fn int_value(point: &NumberDataPoint) -> i64 {
    match point.value {
        Some(number_data_point::Value::AsInt(v)) => v,
        other => panic!("expected an integer data point, got {other:?}"),
    }
}

/// The data points of a sum (counter) metric, with its monotonicity.
pub fn sum_points(metric: &Metric) -> (bool, &[NumberDataPoint]) {
    match &metric.data {
        Some(metric::Data::Sum(sum)) => (sum.is_monotonic, &sum.data_points),
        other => panic!("{} is not a sum: {other:?}", metric.name),
    }
}

pub fn gauge_points(metric: &Metric) -> &[NumberDataPoint] {
    match &metric.data {
        Some(metric::Data::Gauge(gauge)) => &gauge.data_points,
        other => panic!("{} is not a gauge: {other:?}", metric.name),
    }
}
