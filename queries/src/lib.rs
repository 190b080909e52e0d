//! Detections and hunting over the lake (DataFusion): filled by the detections issue.
