/* SPDX-License-Identifier: GPL-2.0-only */
/* tracelake node sensor: every program, built as one CO-RE object. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "tracelake.h"
#include "common.h"
#include "path.h"
#include "process.h"
#include "file.h"
#include "net.h"
#include "priv.h"
#include "cgroup.h"

char LICENSE[] SEC("license") = "GPL";
