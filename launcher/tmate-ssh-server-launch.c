// SPDX-License-Identifier: MIT
/*
 * tmate-ssh-server-launch: the entrypoint of the tmate-ssh-server image.
 *
 * It reads the settings from the environment, makes sure the SSH host keys
 * exist (generating the missing ones with libssh, never replacing one),
 * prints their SHA256 fingerprints and a ready-to-paste ~/.tmate.conf block,
 * then starts tmate-ssh-server as its child and stays as the parent: it
 * forwards stop signals, reaps every child (it may be PID 1 in a container)
 * and cleans up leftover session processes when the server is gone.
 *
 * Why a C program instead of the old shell entrypoints: those silently
 * ignored USE_PROXY_PROTOCOL=true (only "1" worked), let "localhost" override
 * WEBSOCKET_HOSTNAME when HAS_WEBSOCKET=1, shifted every following flag by
 * one when the host name was unset (an unquoted empty "-h $SSH_HOSTNAME"),
 * and printed MD5 fingerprints that current tmate clients do not accept.
 * Here every value is validated before anything is touched, and a bad one
 * is a one-line error naming the variable.
 *
 * Exit codes: 0 ok (--help, --print-config), 2 bad settings or command line,
 * 3 host key or /tmp/tmate problem, otherwise the server's own exit status
 * (128 + signal number if it was killed by a signal).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libssh/libssh.h>
#include <mbedtls/base64.h>

#define PROG "tmate-ssh-server-launch"
#define EXIT_SETTINGS 2
#define EXIT_KEYS 3

#define DEFAULT_KEYS_PATH "/etc/tmate-keys"
#define DEFAULT_PORT 2222
#define RSA_BITS 3072
#define RSA_WEAK_BITS 2048
#define STOP_GRACE_MS 1000
#define STOP_TICK_MS 50

struct config {
    char hostname[256];
    int port_listen;
    int port_advertise;
    const char *bind_address;      /* NULL: flag omitted */
    bool proxy_protocol;
    bool require_authorized_keys;
    const char *websocket_host;    /* NULL: flag omitted */
    int websocket_port;            /* 0: flag omitted */
    const char *keys_dir;
    char server_path[PATH_MAX];
};

struct host_key {
    const char *file;              /* name inside the keys folder */
    const char *label;             /* for messages */
    enum ssh_keytypes_e type;
    int generate_bits;             /* parameter of ssh_pki_generate */
    char path[PATH_MAX];
    ssh_key key;                   /* NULL while missing */
    char fingerprint[128];
    int bits;
};

static void die(int code, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

static void die(int code, const char *fmt, ...)
{
    va_list ap;

    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void warn(const char *fmt, ...)
{
    va_list ap;

    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/*
 * Settings come from untrusted environments; escape what we echo back so a
 * stray control character cannot garble the one-line error.
 */
static const char *printable(const char *s, char *buf, size_t size)
{
    size_t n = 0;

    for (; *s && n + 5 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            n += (size_t)snprintf(buf + n, size - n, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
        else
            buf[n++] = (char)c;
    }
    buf[n] = '\0';
    return buf;
}

static void die_setting(const char *name, const char *value, const char *allowed)
    __attribute__((noreturn));

static void die_setting(const char *name, const char *value, const char *allowed)
{
    char buf[256];

    die(EXIT_SETTINGS, "%s=\"%s\": expected %s", name,
        printable(value, buf, sizeof(buf)), allowed);
}

/* ---- settings from the environment ---------------------------------- */

static bool env_bool(const char *name)
{
    static const char *const yes[] = { "1", "true", "yes", "on" };
    static const char *const no[] = { "", "0", "false", "no", "off" };
    const char *value = getenv(name);

    if (value == NULL)
        return false;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (strcasecmp(value, yes[i]) == 0)
            return true;
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (strcasecmp(value, no[i]) == 0)
            return false;
    die_setting(name, value, "1, true, yes, on or 0, false, no, off (or empty)");
}

/* Strictly decimal: the server uses atoi(), which would take "22x" as 22. */
static int env_port(const char *name, int fallback)
{
    const char *value = getenv(name);
    long port = 0;

    if (value == NULL)
        return fallback;
    for (const char *p = value; *p; p++) {
        if (*p < '0' || *p > '9' || port > 65535)
            die_setting(name, value, "a port number from 1 to 65535");
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
        die_setting(name, value, "a port number from 1 to 65535");
    return (int)port;
}

/*
 * Host names end up on the server's command line and in the printed client
 * configuration, so allow only what a host name or IP address can contain.
 */
static bool valid_host(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > 253)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && strchr(".-_:%[]", *s) == NULL)
            return false;
    return true;
}

static const char *env_host(const char *name)
{
    const char *value = getenv(name);

    if (value != NULL && !valid_host(value))
        die_setting(name, value, "a host name or IP address "
                    "(letters, digits and . - _ : % [ ])");
    return value;
}

static void default_hostname(char *buf, size_t size)
{
    if (gethostname(buf, size) != 0)
        die(EXIT_SETTINGS, "SSH_HOSTNAME is not set and gethostname() failed: %s",
            strerror(errno));
    buf[size - 1] = '\0';
    if (!valid_host(buf))
        die(EXIT_SETTINGS, "SSH_HOSTNAME is not set and the system host name "
            "is not usable; set SSH_HOSTNAME");
}

/* The server sits next to the launcher unless a test or image overrides it. */
static void find_server(char *buf, size_t size)
{
    const char *value = getenv("TMATE_SSH_SERVER");
    ssize_t n;
    char *slash;

    if (value != NULL) {
        if (*value == '\0' || strlen(value) >= size)
            die_setting("TMATE_SSH_SERVER", value, "the path of tmate-ssh-server");
        strcpy(buf, value);
        return;
    }
    n = readlink("/proc/self/exe", buf, size - 1);
    if (n < 0)
        die(EXIT_SETTINGS, "cannot find the launcher's own path "
            "(readlink /proc/self/exe: %s); set TMATE_SSH_SERVER", strerror(errno));
    buf[n] = '\0';
    slash = strrchr(buf, '/');
    if (slash == NULL || (size_t)(slash - buf) + sizeof("/tmate-ssh-server") > size)
        die(EXIT_SETTINGS, "unexpected launcher path %s; set TMATE_SSH_SERVER", buf);
    strcpy(slash + 1, "tmate-ssh-server");
}

/* A control character in the keys path would break the pasted block's comment line. */
static bool has_control(const char *s)
{
    for (; *s != '\0'; s++)
        if (iscntrl((unsigned char)*s))
            return true;
    return false;
}

/* access(X_OK) alone says yes to a directory when we are root. */
static void check_server(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0 || access(path, X_OK) != 0)
        die(EXIT_SETTINGS, "cannot run the server %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        die(EXIT_SETTINGS, "cannot run the server %s: not a regular file", path);
}

static void read_config(struct config *cfg)
{
    const char *value;

    memset(cfg, 0, sizeof(*cfg));

    value = env_host("SSH_HOSTNAME");
    if (value != NULL)
        snprintf(cfg->hostname, sizeof(cfg->hostname), "%s", value);
    else
        default_hostname(cfg->hostname, sizeof(cfg->hostname));

    cfg->port_listen = env_port("SSH_PORT_LISTEN", DEFAULT_PORT);
    cfg->port_advertise = env_port("SSH_PORT_ADVERTISE", cfg->port_listen);
    cfg->bind_address = env_host("SSH_BIND_ADDRESS");
    cfg->proxy_protocol = env_bool("USE_PROXY_PROTOCOL");
    cfg->require_authorized_keys = env_bool("REQUIRE_AUTHORIZED_KEYS");

    /* An explicit WEBSOCKET_HOSTNAME always wins over the HAS_WEBSOCKET default. */
    cfg->websocket_host = env_host("WEBSOCKET_HOSTNAME");
    if (env_bool("HAS_WEBSOCKET") && cfg->websocket_host == NULL)
        cfg->websocket_host = "localhost";
    cfg->websocket_port = env_port("WEBSOCKET_PORT", 0);

    value = getenv("SSH_KEYS_PATH");
    if (value != NULL && (*value == '\0' || strlen(value) > PATH_MAX - 64 || has_control(value)))
        die_setting("SSH_KEYS_PATH", value,
                    "the path of the host keys folder, without control characters");
    cfg->keys_dir = value != NULL ? value : DEFAULT_KEYS_PATH;
}

/* ---- /tmp/tmate ------------------------------------------------------ */

/*
 * The server insists on these being 0700 directories owned by its uid and
 * otherwise dies with "has incorrect ownership/mode"; say what is wrong.
 */
static void check_workdir(void)
{
    static const char *const dirs[] = {
        "/tmp/tmate", "/tmp/tmate/sessions", "/tmp/tmate/jail",
    };
    struct stat st;

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (lstat(dirs[i], &st) != 0) {
            if (errno == ENOENT)
                continue;
            die(EXIT_KEYS, "cannot inspect %s: %s", dirs[i], strerror(errno));
        }
        if (!S_ISDIR(st.st_mode))
            die(EXIT_KEYS, "%s exists but is not a directory; tmate-ssh-server "
                "needs a directory owned by uid %u with mode 0700 (remove it)",
                dirs[i], (unsigned)geteuid());
        if (st.st_uid != geteuid() || (st.st_mode & 07777) != 0700)
            die(EXIT_KEYS, "%s is owned by uid %u with mode %04o; tmate-ssh-server "
                "needs owner uid %u and mode 0700 (remove it or fix it)",
                dirs[i], (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
                (unsigned)geteuid());
    }
}

/* ---- host keys ------------------------------------------------------- */

/* Like mkdir -p, but the last component gets 0700: it will hold secrets. */
static void make_keys_dir(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;

    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            die(EXIT_KEYS, "keys folder %s exists but is not a directory", dir);
        return;
    }
    if (errno != ENOENT)
        die(EXIT_KEYS, "cannot use keys folder %s: %s", dir, strerror(errno));

    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; ; p++) {
        bool last = (*p == '\0');
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        mode_t mode = last ? 0700 : 0755;
        if (mkdir(path, mode) == 0) {
            /* mkdir() honours the umask; the modes above are the contract. */
            if (chmod(path, mode) != 0)
                die(EXIT_KEYS, "cannot set mode of %s: %s", path, strerror(errno));
        } else if (errno != EEXIST) {
            die(EXIT_KEYS, "cannot create keys folder %s: %s", path, strerror(errno));
        }
        if (last)
            break;
        *p = '/';
    }
}

/*
 * Loads one key if its file exists; anything unusable is fatal. stat() comes
 * before any open(): opening a FIFO put in the key's place would block forever.
 */
static void load_key(struct host_key *hk)
{
    struct stat st;

    if (stat(hk->path, &st) != 0) {
        if (errno == ENOENT && lstat(hk->path, &st) == 0)
            die(EXIT_KEYS, "host key %s is a symbolic link to nothing", hk->path);
        if (errno == ENOENT)
            return;
        die(EXIT_KEYS, "cannot read host key %s: %s", hk->path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        die(EXIT_KEYS, "host key %s is not a regular file", hk->path);
    if (access(hk->path, R_OK) != 0)
        die(EXIT_KEYS, "cannot read host key %s: %s", hk->path, strerror(errno));
    if (st.st_size == 0)
        die(EXIT_KEYS, "host key %s is an empty file", hk->path);

    if (ssh_pki_import_privkey_file(hk->path, NULL, NULL, NULL, &hk->key) != SSH_OK)
        die(EXIT_KEYS, "host key %s: not a private key libssh can read "
            "(corrupt, encrypted or unsupported format)", hk->path);
    if (ssh_key_type(hk->key) != hk->type)
        die(EXIT_KEYS, "host key %s holds a %s key, expected %s", hk->path,
            ssh_key_type_to_char(ssh_key_type(hk->key)),
            ssh_key_type_to_char(hk->type));
}

/* Returns 0, or the errno of the write that failed. */
static int write_all(int fd, const char *data)
{
    size_t len = strlen(data);

    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Writes a complete file under a temporary name in the same folder, then
 * puts it in place, so a crash or a full disk never leaves half a file
 * behind. With replace false it uses link(), which fails with EEXIST instead
 * of overwriting: a private key is never replaced, even by a racing launcher.
 * Returns false only for that EEXIST; every other failure is fatal.
 */
static bool install_file(const char *dir, const char *name, const char *data,
                         mode_t mode, bool replace)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    int fd, err;

    snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name);
    snprintf(path, sizeof(path), "%s/%s", dir, name);

    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        die(EXIT_KEYS, "cannot create a file in keys folder %s: %s", dir, strerror(errno));
    err = write_all(fd, data);
    if (err == 0 && (fchmod(fd, mode) != 0 || fsync(fd) != 0))
        err = errno;
    if (close(fd) != 0 && err == 0)
        err = errno;
    if (err != 0) {
        unlink(tmp);
        die(EXIT_KEYS, "cannot write %s: %s", path, strerror(err));
    }

    if (replace ? rename(tmp, path) != 0 : link(tmp, path) != 0) {
        err = errno;
        unlink(tmp);
        if (err == EEXIST && !replace)
            return false;
        die(EXIT_KEYS, "cannot install %s: %s", path, strerror(err));
    }
    if (!replace)
        unlink(tmp);
    return true;
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static char *public_line(const struct host_key *hk)
{
    char *b64 = NULL, *line = NULL;

    if (ssh_pki_export_pubkey_base64(hk->key, &b64) != SSH_OK ||
        asprintf(&line, "%s %s tmate-ssh-server\n",
                 ssh_key_type_to_char(hk->type), b64) < 0)
        die(EXIT_KEYS, "cannot export the public part of %s", hk->path);
    ssh_string_free_char(b64);
    return line;
}

/*
 * The private key goes in first, with link(), so that of two launchers racing
 * on an empty folder exactly one wins; the other loads the winner's key. Only
 * the winner then writes the .pub, which is derived data and may replace a
 * stale one, so the .pub always matches the private key beside it.
 */
static void generate_key(struct host_key *hk, const char *dir)
{
    char *private_b64 = NULL, *pub, pub_name[128];

    fprintf(stderr, PROG ": generating %s host key %s\n", hk->label, hk->path);
    if (ssh_pki_generate(hk->type, hk->generate_bits, &hk->key) != SSH_OK)
        die(EXIT_KEYS, "cannot generate %s host key", hk->label);
    if (ssh_pki_export_privkey_base64_format(hk->key, NULL, NULL, NULL, &private_b64,
                                             SSH_FILE_FORMAT_OPENSSH) != SSH_OK)
        die(EXIT_KEYS, "cannot export %s host key", hk->label);

    if (!install_file(dir, hk->file, private_b64, 0600, false)) {
        ssh_string_free_char(private_b64);
        ssh_key_free(hk->key);
        hk->key = NULL;
        warn("%s appeared meanwhile (another launcher?); using it", hk->path);
        load_key(hk);
        return;
    }
    pub = public_line(hk);
    snprintf(pub_name, sizeof(pub_name), "%s.pub", hk->file);
    install_file(dir, pub_name, pub, 0644, true);

    free(pub);
    ssh_string_free_char(private_b64);
}

/* Size of the RSA modulus, read from the public key blob (type, e, n). */
static int rsa_bits(const ssh_key key)
{
    char *b64 = NULL;
    unsigned char blob[4096];
    size_t len = 0, pos = 0, field = 0;

    if (ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK)
        return 0;
    if (mbedtls_base64_decode(blob, sizeof(blob), &len, (const unsigned char *)b64,
                              strlen(b64)) != 0)
        len = 0;
    ssh_string_free_char(b64);

    for (int i = 0; i < 3; i++) {
        if (pos + 4 > len)
            return 0;
        field = (size_t)blob[pos] << 24 | (size_t)blob[pos + 1] << 16 |
                (size_t)blob[pos + 2] << 8 | blob[pos + 3];
        pos += 4;
        if (field > len - pos)
            return 0;
        if (i < 2)
            pos += field;
    }
    while (field > 0 && blob[pos] == 0) {   /* mpint sign padding */
        pos++;
        field--;
    }
    if (field == 0)
        return 0;
    int bits = (int)(field - 1) * 8;
    for (unsigned char top = blob[pos]; top != 0; top >>= 1)
        bits++;
    return bits;
}

static void fingerprint(struct host_key *hk)
{
    unsigned char *hash = NULL;
    size_t hlen = 0;
    char *fp;

    if (ssh_get_publickey_hash(hk->key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) != 0)
        die(EXIT_KEYS, "cannot hash host key %s", hk->path);
    fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    if (fp == NULL)
        die(EXIT_KEYS, "cannot format the fingerprint of %s", hk->path);
    snprintf(hk->fingerprint, sizeof(hk->fingerprint), "%s", fp);
    ssh_string_free_char(fp);
    ssh_clean_pubkey_hash(&hash);
}

/*
 * Loads everything first and only then generates what is missing, so a bad
 * key or an unwritable folder leaves the folder exactly as it was.
 */
static void prepare_keys(const char *dir, struct host_key *keys, size_t count)
{
    bool missing = false;

    make_keys_dir(dir);
    for (size_t i = 0; i < count; i++) {
        snprintf(keys[i].path, sizeof(keys[i].path), "%s/%s", dir, keys[i].file);
        load_key(&keys[i]);
        missing |= (keys[i].key == NULL);
    }

    if (missing) {
        if (access(dir, W_OK | X_OK) != 0)
            die(EXIT_KEYS, "cannot write to keys folder %s to add missing keys: %s",
                dir, strerror(errno));
        for (size_t i = 0; i < count; i++)
            if (keys[i].key == NULL)
                generate_key(&keys[i], dir);
        sync_dir(dir);
    }

    for (size_t i = 0; i < count; i++) {
        fingerprint(&keys[i]);
        if (keys[i].type == SSH_KEYTYPE_RSA) {
            keys[i].bits = rsa_bits(keys[i].key);
            if (keys[i].bits == 0)
                warn("warning: cannot tell the size of RSA key %s", keys[i].path);
            else if (keys[i].bits < RSA_WEAK_BITS)
                warn("warning: %s is a weak %d-bit RSA key (2048 or more is "
                     "recommended); using it anyway", keys[i].path, keys[i].bits);
        }
    }
}

/*
 * Everything on stdout is valid tmate configuration: the descriptive lines
 * are comments, so the whole output can be pasted into ~/.tmate.conf.
 * The fingerprints need no quotes: base64 has no character that tmate's
 * configuration parser treats specially.
 */
static void print_config(const struct config *cfg, const struct host_key *rsa,
                         const struct host_key *ed25519)
{
    printf("# tmate-ssh-server host keys in %s\n", cfg->keys_dir);
    printf("#   RSA %d bits  %s\n", rsa->bits, rsa->fingerprint);
    printf("#   ED25519     %s\n", ed25519->fingerprint);
    printf("# Client configuration, paste into ~/.tmate.conf:\n");
    printf("set -g tmate-server-host %s\n", cfg->hostname);
    printf("set -g tmate-server-port %d\n", cfg->port_advertise);
    printf("set -g tmate-server-rsa-fingerprint %s\n", rsa->fingerprint);
    printf("set -g tmate-server-ed25519-fingerprint %s\n", ed25519->fingerprint);
    fflush(stdout);
}

/* ---- the server's command line --------------------------------------- */

static char *format_int(int value)
{
    char *s = NULL;

    if (asprintf(&s, "%d", value) < 0)
        die(1, "out of memory");
    return s;
}

static char **build_argv(const struct config *cfg, char **extra, int extra_count)
{
    char **argv = calloc((size_t)extra_count + 24, sizeof(*argv));
    int n = 0;

    if (argv == NULL)
        die(1, "out of memory");
    argv[n++] = (char *)cfg->server_path;
    argv[n++] = "-k";
    argv[n++] = (char *)cfg->keys_dir;
    argv[n++] = "-h";
    argv[n++] = (char *)cfg->hostname;
    argv[n++] = "-p";
    argv[n++] = format_int(cfg->port_listen);
    argv[n++] = "-q";
    argv[n++] = format_int(cfg->port_advertise);
    if (cfg->bind_address != NULL) {
        argv[n++] = "-b";
        argv[n++] = (char *)cfg->bind_address;
    }
    if (cfg->proxy_protocol)
        argv[n++] = "-x";
    if (cfg->require_authorized_keys)
        argv[n++] = "-A";
    if (cfg->websocket_host != NULL) {
        argv[n++] = "-w";
        argv[n++] = (char *)cfg->websocket_host;
    }
    if (cfg->websocket_port != 0) {
        argv[n++] = "-z";
        argv[n++] = format_int(cfg->websocket_port);
    }
    for (int i = 0; i < extra_count; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return argv;
}

static void print_quoted(FILE *out, const char *s)
{
    const char *safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                       "0123456789_@%+=:,./-";

    if (*s != '\0' && strspn(s, safe) == strlen(s)) {
        fputs(s, out);
        return;
    }
    fputc('\'', out);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", out);
        else
            fputc(*s, out);
    }
    fputc('\'', out);
}

static void print_argv(char **argv)
{
    fputs(PROG ": starting", stderr);
    for (; *argv; argv++) {
        fputc(' ', stderr);
        print_quoted(stderr, *argv);
    }
    fputc('\n', stderr);
}

/* The server refuses to run without a UTF-8 locale. */
static void default_locale(void)
{
    static const char *const vars[] = { "LC_ALL", "LC_CTYPE", "LANG" };

    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        const char *value = getenv(vars[i]);
        if (value != NULL && *value != '\0')
            return;
    }
    setenv("LANG", "C.UTF-8", 1);
}

/* ---- supervising the server ------------------------------------------ */

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

/*
 * Reaps every child that has exited: the server, and the session processes
 * that become ours when their parent dies (we are PID 1 or a subreaper).
 * Returns false once no child is left at all.
 */
static bool reap(pid_t server, bool *server_done, int *server_status)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid == 0)
            return true;
        if (pid < 0)
            return errno == EINTR;
        if (pid == server) {
            *server_done = true;
            *server_status = status;
        }
    }
}

/*
 * Signals our direct children, found through /proc. We cannot use kill(-1)
 * because outside a PID namespace it would hit every process of the host.
 * Returns how many could not be signalled for want of permission.
 */
static int signal_children(int sig)
{
    DIR *proc = opendir("/proc");
    struct dirent *de;
    pid_t self = getpid();
    int refused = 0;

    if (proc == NULL)
        return 0;
    while ((de = readdir(proc)) != NULL) {
        char path[64], buf[512];
        const char *paren;
        int ppid = 0;
        FILE *f;

        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        f = fopen(path, "re");
        if (f == NULL)
            continue;
        /* "pid (comm) state ppid": comm may hold spaces and parentheses. */
        if (fgets(buf, sizeof(buf), f) != NULL &&
            (paren = strrchr(buf, ')')) != NULL &&
            sscanf(paren + 1, " %*c %d", &ppid) == 1 && ppid == self &&
            kill((pid_t)atoi(de->d_name), sig) < 0 && errno == EPERM)
            refused++;
        fclose(f);
    }
    closedir(proc);
    return refused;
}

/* Waits for the next signal, or until timeout_ms (-1: forever). */
static int next_signal(int sfd, int timeout_ms)
{
    struct pollfd pfd = { .fd = sfd, .events = POLLIN };
    struct signalfd_siginfo si;

    int r = poll(&pfd, 1, timeout_ms);
    if (r <= 0)
        return 0;
    if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return 0;
    return (int)si.ssi_signo;
}

/*
 * The server is gone: give the remaining children (detached sessions) up to
 * STOP_GRACE_MS to end on SIGTERM, then SIGKILL them, so that a container
 * stop finishes well within its timeout. Orphans of killed children come to
 * us too, so keep signalling until none is left.
 */
static void stop_children(int sfd, pid_t server)
{
    long deadline = now_ms() + STOP_GRACE_MS;
    bool unused_done;
    int unused_status;

    while (reap(server, &unused_done, &unused_status)) {
        /*
         * Sessions run as nobody. In a container with only the capabilities
         * the jail needs (no CAP_KILL) we may not signal them. As PID 1 that
         * does not matter: when we exit, the kernel kills every process left
         * in our PID namespace. Elsewhere there is nothing more we can do.
         */
        if (signal_children(now_ms() < deadline ? SIGTERM : SIGKILL) > 0) {
            if (getpid() != 1)
                warn("cannot signal the remaining session processes; leaving them");
            return;
        }
        next_signal(sfd, STOP_TICK_MS);
    }
}

static bool is_stop_signal(int sig)
{
    return sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT;
}

/*
 * Blocks the signals we handle and returns a signalfd that reads them. This
 * happens before the keys are made, so that a stop that arrives meanwhile is
 * queued rather than lost (as PID 1, a signal left at its default action is
 * dropped). There is no asynchronous handler and no global state.
 */
static int block_signals(void)
{
    static const int handled[] = {
        SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2,
    };
    sigset_t set;
    int sfd;

    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++) {
        sigaddset(&set, handled[i]);
        /*
         * A parent may hand these over ignored (a shell's "&" ignores SIGINT
         * and SIGQUIT; an ignored SIGCHLD would make the kernel reap the
         * server before we see its status). The server inherits the defaults.
         */
        signal(handled[i], SIG_DFL);
    }
    sigprocmask(SIG_BLOCK, &set, NULL);
    sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0)
        die(1, "signalfd: %s", strerror(errno));
    return sfd;
}

/* A stop asked for while the keys were being made: do not start the server. */
static int pending_stop(int sfd)
{
    int sig;

    while ((sig = next_signal(sfd, 0)) != 0)
        if (is_stop_signal(sig))
            return sig;
    return 0;
}

static int run_server(int sfd, char **argv)
{
    sigset_t empty;
    pid_t server;
    int sig, server_status = 0;
    bool server_done = false;
    long kill_at = -1;

    if ((sig = pending_stop(sfd)) != 0) {
        warn("stopped by signal %d before the server started", sig);
        return 128 + sig;
    }
    /* Session processes detach from the server; when it dies they are ours. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

    print_argv(argv);
    fflush(NULL);
    server = fork();
    if (server < 0)
        die(1, "fork: %s", strerror(errno));
    if (server == 0) {
        sigemptyset(&empty);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        execv(argv[0], argv);
        fprintf(stderr, PROG ": cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }

    /*
     * Signals are forwarded to the server. After a stop signal it has
     * STOP_GRACE_MS to end before it gets SIGKILL, so that a container stop
     * finishes well within its timeout even if the server hangs.
     */
    while (!server_done) {
        int wait_ms = kill_at < 0 ? -1 : (int)(kill_at > now_ms() ? kill_at - now_ms() : 0);
        sig = next_signal(sfd, wait_ms);
        if (sig == SIGCHLD) {
            reap(server, &server_done, &server_status);
        } else if (sig != 0) {
            kill(server, sig);
            if (is_stop_signal(sig) && kill_at < 0)
                kill_at = now_ms() + STOP_GRACE_MS;
        } else if (kill_at >= 0 && now_ms() >= kill_at) {
            warn("the server did not stop within %d ms; killing it", STOP_GRACE_MS);
            kill(server, SIGKILL);
            kill_at = -1;
        }
    }
    stop_children(sfd, server);
    close(sfd);
    return exit_code(server_status);
}

/* ---- command line ------------------------------------------------------ */

static void usage(void)
{
    printf(
"Usage: " PROG " [--print-config] [--help] [-- SERVER-ARGS...]\n"
"\n"
"Creates the SSH host keys if missing, prints their SHA256 fingerprints and a\n"
"~/.tmate.conf block for clients, then runs tmate-ssh-server and supervises it.\n"
"\n"
"  --print-config  create missing keys, print the fingerprints and the client\n"
"                  block, and exit without starting the server\n"
"  --help          show this help\n"
"  -- ARGS         pass ARGS to tmate-ssh-server after the generated flags\n"
"\n"
"Environment (variable, server flag, default):\n"
"  SSH_KEYS_PATH            -k  /etc/tmate-keys (created 0700 if absent)\n"
"  SSH_HOSTNAME             -h  the system host name (gethostname)\n"
"  SSH_PORT_LISTEN          -p  2222\n"
"  SSH_PORT_ADVERTISE       -q  the listen port\n"
"  SSH_BIND_ADDRESS         -b  none (flag omitted: all addresses)\n"
"  USE_PROXY_PROTOCOL       -x  off\n"
"  REQUIRE_AUTHORIZED_KEYS  -A  off\n"
"  HAS_WEBSOCKET            -w  off; when on, -w localhost unless\n"
"                               WEBSOCKET_HOSTNAME is set\n"
"  WEBSOCKET_HOSTNAME       -w  none (always wins over HAS_WEBSOCKET)\n"
"  WEBSOCKET_PORT           -z  none (flag omitted)\n"
"  TMATE_SSH_SERVER             tmate-ssh-server next to this launcher\n"
"  LANG                         C.UTF-8 if LC_ALL, LC_CTYPE and LANG are unset\n"
"\n"
"Booleans: 1, true, yes, on turn on; 0, false, no, off or empty leave off.\n"
"Ports: decimal 1 to 65535.\n"
"Exit codes: 0 ok, 2 bad setting or option, 3 host key or /tmp/tmate problem,\n"
"otherwise the server's exit status (128 + signal if it was killed).\n");
}

int main(int argc, char **argv)
{
    struct config cfg;
    struct host_key keys[] = {
        { .file = "ssh_host_rsa_key", .label = "RSA",
          .type = SSH_KEYTYPE_RSA, .generate_bits = RSA_BITS },
        { .file = "ssh_host_ed25519_key", .label = "ED25519",
          .type = SSH_KEYTYPE_ED25519, .generate_bits = 0 },
    };
    bool print_only = false;
    int extra_start = argc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            extra_start = i + 1;
            break;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else if (strcmp(argv[i], "--print-config") == 0) {
            print_only = true;
        } else {
            char buf[256];
            die(EXIT_SETTINGS, "unknown option \"%s\" (see --help; server "
                "flags go after --)", printable(argv[i], buf, sizeof(buf)));
        }
    }

    /* Every setting is checked before anything on disk is touched. */
    read_config(&cfg);
    if (!print_only) {
        find_server(cfg.server_path, sizeof(cfg.server_path));
        check_server(cfg.server_path);
        check_workdir();
    }

    int sfd = print_only ? -1 : block_signals();
    if (ssh_init() != SSH_OK)
        die(EXIT_KEYS, "cannot initialise libssh");
    prepare_keys(cfg.keys_dir, keys, sizeof(keys) / sizeof(keys[0]));
    print_config(&cfg, &keys[0], &keys[1]);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        ssh_key_free(keys[i].key);
    ssh_finalize();

    if (print_only)
        return 0;
    default_locale();
    return run_server(sfd, build_argv(&cfg, argv + extra_start, argc - extra_start));
}
