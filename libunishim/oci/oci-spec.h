/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The OCI runtime spec (config.json, runtime-spec 1.0/1.1) as unishim's
 * container engine consumes it. Parsed by one function with limits (see
 * oci-spec.c); everything the parser accepts is structurally valid: strings
 * are NUL-free, counts are bounded, enums are known, capability names are
 * resolved to numbers, namespace types to CLONE_NEW* flags.
 *
 * Optional scalars carry a has_ flag. Arrays are pointer + count; string
 * lists (strv) are NULL-terminated. Everything is owned by the spec and
 * freed by us_oci_spec_free().
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/cleanup.h"
#include "base/error.h"

/* Parser limits: anything above is rejected with a clear error. */
#define US_OCI_MAX_CONFIG_SIZE (16u << 20) /* bytes of config.json */
#define US_OCI_MAX_DEPTH       32          /* JSON nesting */
#define US_OCI_MAX_ITEMS       65536       /* elements of any one array/map */
#define US_OCI_MAX_VALUES      (1u << 19)  /* JSON values in the whole document (memory) */

struct us_oci_kv {
        char *key;
        char *value;
};

struct us_oci_user {
        uint32_t uid;
        uint32_t gid;
        bool has_umask;
        uint32_t umask;
        uint32_t *additional_gids;
        size_t n_additional_gids;
};

struct us_oci_rlimit {
        int resource; /* RLIMIT_* resolved from "RLIMIT_NOFILE" etc. */
        uint64_t soft;
        uint64_t hard;
};

/* Capability sets as bit masks over capability numbers (1ULL << CAP_*). */
struct us_oci_capabilities {
        uint64_t bounding;
        uint64_t effective;
        uint64_t inheritable;
        uint64_t permitted;
        uint64_t ambient;
};

struct us_oci_process {
        bool terminal;
        bool has_console_size;
        uint32_t console_height;
        uint32_t console_width;
        struct us_oci_user user;
        char **args; /* strv, at least one element */
        char **env;  /* strv, "KEY=VALUE" */
        char *cwd;   /* absolute */
        bool has_capabilities;
        struct us_oci_capabilities capabilities;
        struct us_oci_rlimit *rlimits;
        size_t n_rlimits;
        bool no_new_privileges;
        bool has_oom_score_adj;
        int oom_score_adj;
        char *apparmor_profile; /* NULL if unset; ignored on hosts without AppArmor */
        char *selinux_label;    /* NULL if unset */
};

struct us_oci_mount {
        char *destination; /* absolute, inside the container */
        char *type;        /* NULL means bind when options say bind/rbind */
        char *source;
        char **options; /* strv, as given: "ro", "nosuid", "rbind", "rprivate", "mode=755", ... */
};

struct us_oci_hook {
        char *path;
        char **args; /* strv, may be NULL */
        char **env;  /* strv, may be NULL */
        bool has_timeout;
        int timeout; /* seconds */
};

struct us_oci_hook_list {
        struct us_oci_hook *hooks;
        size_t n_hooks;
};

struct us_oci_hooks {
        struct us_oci_hook_list prestart; /* deprecated, run as createRuntime */
        struct us_oci_hook_list create_runtime;
        struct us_oci_hook_list create_container;
        struct us_oci_hook_list start_container;
        struct us_oci_hook_list poststart;
        struct us_oci_hook_list poststop;
};

struct us_oci_namespace {
        int type;   /* CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNS,
                       CLONE_NEWCGROUP, CLONE_NEWUSER, CLONE_NEWTIME */
        char *path; /* join this namespace (setns) when set; else create a new one */
};

struct us_oci_id_mapping {
        uint32_t container_id;
        uint32_t host_id;
        uint32_t size;
};

struct us_oci_device {
        char type; /* 'c', 'b', 'u', 'p' */
        char *path;
        int64_t major;
        int64_t minor;
        bool has_file_mode;
        uint32_t file_mode;
        bool has_uid;
        uint32_t uid;
        bool has_gid;
        uint32_t gid;
};

struct us_oci_device_rule {
        bool allow;
        char type;     /* 'a', 'c', 'b' ('a' when absent) */
        int64_t major; /* -1 = wildcard */
        int64_t minor; /* -1 = wildcard */
        char *access;  /* subset of "rwm"; NULL = "rwm" */
};

struct us_oci_memory {
        bool has_limit;
        int64_t limit; /* -1 = unlimited */
        bool has_reservation;
        int64_t reservation;
        bool has_swap;
        int64_t swap; /* memory+swap, as in the spec */
        bool has_kernel;
        int64_t kernel;
        bool has_kernel_tcp;
        int64_t kernel_tcp;
        bool has_swappiness;
        uint64_t swappiness;
        bool has_disable_oom_killer;
        bool disable_oom_killer;
};

struct us_oci_cpu {
        bool has_shares;
        uint64_t shares;
        bool has_quota;
        int64_t quota;
        bool has_period;
        uint64_t period;
        bool has_realtime_runtime;
        int64_t realtime_runtime;
        bool has_realtime_period;
        uint64_t realtime_period;
        char *cpus; /* cpuset list, NULL if unset */
        char *mems;
};

struct us_oci_resources {
        struct us_oci_device_rule *devices;
        size_t n_devices;
        struct us_oci_memory memory;
        struct us_oci_cpu cpu;
        bool has_pids_limit;
        int64_t pids_limit; /* <= 0 = unlimited */
        bool has_blkio_weight;
        uint16_t blkio_weight;
        struct us_oci_kv *unified; /* cgroup v2 files, key = file name */
        size_t n_unified;
};

enum us_oci_seccomp_action {
        US_SECCOMP_ACT_KILL,         /* SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD */
        US_SECCOMP_ACT_KILL_PROCESS, /* SCMP_ACT_KILL_PROCESS */
        US_SECCOMP_ACT_TRAP,
        US_SECCOMP_ACT_ERRNO,
        US_SECCOMP_ACT_TRACE,
        US_SECCOMP_ACT_ALLOW,
        US_SECCOMP_ACT_LOG,
        US_SECCOMP_ACT_NOTIFY,
};

enum us_oci_seccomp_op {
        US_SECCOMP_OP_NE,
        US_SECCOMP_OP_LT,
        US_SECCOMP_OP_LE,
        US_SECCOMP_OP_EQ,
        US_SECCOMP_OP_GE,
        US_SECCOMP_OP_GT,
        US_SECCOMP_OP_MASKED_EQ,
};

struct us_oci_seccomp_arg {
        uint32_t index; /* 0..5 */
        uint64_t value;
        uint64_t value_two;
        enum us_oci_seccomp_op op;
};

struct us_oci_seccomp_rule {
        char **names; /* strv of syscall names (unknown ones are skipped at load time) */
        enum us_oci_seccomp_action action;
        bool has_errno_ret;
        uint32_t errno_ret;
        struct us_oci_seccomp_arg *args;
        size_t n_args;
};

struct us_oci_seccomp {
        enum us_oci_seccomp_action default_action;
        bool has_default_errno_ret;
        uint32_t default_errno_ret;
        char **architectures; /* strv of "SCMP_ARCH_X86_64", ... ; may be NULL */
        char **flags;         /* strv of "SECCOMP_FILTER_FLAG_*"; may be NULL */
        struct us_oci_seccomp_rule *rules;
        size_t n_rules;
};

struct us_oci_linux {
        struct us_oci_namespace *namespaces;
        size_t n_namespaces;
        struct us_oci_id_mapping *uid_mappings;
        size_t n_uid_mappings;
        struct us_oci_id_mapping *gid_mappings;
        size_t n_gid_mappings;
        struct us_oci_device *devices;
        size_t n_devices;
        char *cgroups_path; /* NULL if unset */
        bool has_resources;
        struct us_oci_resources resources;
        struct us_oci_kv *sysctl;
        size_t n_sysctl;
        char **masked_paths;      /* strv, may be NULL */
        char **readonly_paths;    /* strv, may be NULL */
        char *rootfs_propagation; /* NULL, "private", "rprivate", "slave", "rslave", "shared", ...
                                   */
        char *mount_label;
        struct us_oci_seccomp *seccomp; /* NULL if unset */
};

struct us_oci_spec {
        char *oci_version;
        struct us_oci_process *process; /* NULL allowed by the spec; required by create */
        char *root_path;                /* as given (relative to the bundle or absolute) */
        bool root_readonly;
        char *hostname;
        char *domainname;
        struct us_oci_mount *mounts;
        size_t n_mounts;
        struct us_oci_hooks hooks;
        struct us_oci_kv *annotations;
        size_t n_annotations;
        struct us_oci_linux linux_;
};

/* Parses config.json text (len bytes, need not be NUL-terminated). */
int us_oci_spec_parse(const char *json, size_t len, struct us_oci_spec **ret,
                      struct us_error **err);
/* Reads <bundle>/config.json (a regular file of at most
 * US_OCI_MAX_CONFIG_SIZE bytes): *ret_json is malloc()ed, not NUL-terminated
 * past *ret_len. */
int us_oci_spec_read(const char *bundle, char **ret_json, size_t *ret_len, struct us_error **err);
/* Reads and parses <bundle>/config.json. */
int us_oci_spec_load(const char *bundle, struct us_oci_spec **ret, struct us_error **err);
struct us_oci_spec *us_oci_spec_free(struct us_oci_spec *spec);
DEFINE_CLEANUP(struct us_oci_spec *, us_oci_spec_free)

/* Parses one runtime-spec Process object (ExecProcessRequest.spec). */
int us_oci_process_parse(const char *json, size_t len, struct us_oci_process **ret,
                         struct us_error **err);
struct us_oci_process *us_oci_process_free(struct us_oci_process *p);

/* Parses one LinuxResources object (UpdateTaskRequest.resources). */
int us_oci_resources_parse(const char *json, size_t len, struct us_oci_resources **ret,
                           struct us_error **err);
struct us_oci_resources *us_oci_resources_free(struct us_oci_resources *r);

/* Annotation value for key, or NULL. */
const char *us_oci_spec_annotation(const struct us_oci_spec *spec, const char *key);

/* The namespace a sysctl (dotted name, as in linux.sysctl) belongs to, as
 * Kubernetes and runc count them: CLONE_NEWIPC (the SysV IPC limits,
 * fs.mqueue.*), CLONE_NEWNET (net.*), CLONE_NEWUTS (kernel.hostname,
 * kernel.domainname), or 0: not namespaced, a setting of the whole kernel
 * that no container may make. Names only: the caller checks the syntax. */
int us_oci_sysctl_namespace(const char *key);
