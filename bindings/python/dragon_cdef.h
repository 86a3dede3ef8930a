/* What the cffi extension exposes to Python, in the subset of C that cffi
 * parses (no macros, no inline functions).  It must agree with the public
 * headers: the extension is compiled against them, so a mismatch is a
 * compile error, not a silent ABI break. */

unsigned dmem_version(void);
const char *dmem_strerror(int err);
const char *dmem_errmsg(void);

unsigned dchan_version(void);
const char *dchan_strerror(int err);

unsigned dtrans_version(void);
const char *dtrans_strerror(int err);

unsigned dlaunch_version(void);
const char *dlaunch_strerror(int err);
