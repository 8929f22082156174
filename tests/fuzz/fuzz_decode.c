/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the devmem wire codec (libdevmem/protocol.c): every
 * request and reply decoder, through dm_check_hdr() and dm_decode().
 *
 * The input is one message exactly as it would arrive in a SEQPACKET record.
 * Besides "no crash, no leak, no undefined behaviour", it checks:
 *   - dm_decode() succeeds only where dm_check_hdr() does, and both read the
 *     same header;
 *   - round trip: a message that decodes re-encodes (dm_encode) to exactly
 *     the input bytes.  The codec is a bijection on valid messages: every
 *     field is copied whole (strings too, bytes after their NUL included),
 *     lengths are exact and the tail count is implied by the length, so
 *     nothing a decoder accepts can be lost or normalised on the way back;
 *   - a failed decode leaves no tail behind.
 * Any violation aborts, which libFuzzer reports as a crash.
 *
 * Build by hand (from the top of a configured tree):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -fno-sanitize-recover=undefined -I. \
 *     -Iinclude -Ilibdevmem tests/fuzz/fuzz_decode.c \
 *     libdevmem/protocol.c libdevmem/common.c -o fuzz_decode
 * Run (the corpus copy keeps the committed seeds unchanged):
 *   cp -r tests/fuzz/corpus/decode /tmp/decode-corpus
 *   ./fuzz_decode -max_len=131200 -max_total_time=60 /tmp/decode-corpus
 * Reproduce a crash: ./fuzz_decode crash-<sha1>
 * Or use ./configure --enable-fuzzing CC=clang && make fuzz (tests/fuzz/README.md).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                       \
	do {                                                              \
		if (!(cond)) {                                            \
			fprintf(stderr,                                   \
				"fuzz_decode: %s:%d: check failed: %s\n", \
				__FILE__, __LINE__, #cond);               \
			abort();                                          \
		}                                                         \
	} while (0)

/* DM_MAX_MSG bytes and a little more: the re-encoding never exceeds the
 * input's length, which dm_decode bounds by DM_MAX_MSG */
static uint8_t out[DM_MAX_MSG + 64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dm_hdr hdr = { 0 };
	struct dm_msg msg;
	int herr, derr;
	ssize_t n;

	herr = dm_check_hdr(data, size, &hdr);
	derr = dm_decode(data, size, &msg);
	/* the names and fd counts of any type value, known or not (hdr is
	 * all zeros when the input is shorter than a header) */
	(void)dm_type_name(hdr.type);
	(void)dm_type_nfds(hdr.type);
	if (derr) {
		CHECK(derr < 0);
		CHECK(msg.tail == NULL && msg.ntail == 0);
		dm_msg_release(&msg); /* harmless on a failed decode */
		return 0;
	}
	CHECK(herr == 0);
	CHECK(msg.hdr.magic == DM_MAGIC && hdr.magic == DM_MAGIC);
	CHECK(msg.hdr.version == DM_PROTO_VERSION);
	CHECK(msg.hdr.type == hdr.type && msg.hdr.id == hdr.id);
	CHECK(msg.hdr.len == size && hdr.len == size);
	CHECK((msg.ntail == 0) == (msg.tail == NULL));

	n = dm_encode(out, sizeof(out), msg.hdr.type, msg.hdr.id, &msg.u,
		      msg.tail, msg.ntail);
	if (n < 0 || (size_t)n != size || memcmp(out, data, size)) {
		size_t i = 0;

		if (n > 0)
			while (i < size && i < (size_t)n && out[i] == data[i])
				i++;
		fprintf(stderr,
			"fuzz_decode: round trip broken for %s%s (type %#x): "
			"%zu bytes in, dm_encode gave %zd; first difference at "
			"byte %zu\n",
			dm_type_name(msg.hdr.type),
			msg.hdr.type & DM_REPLY ? " reply" : "", msg.hdr.type,
			size, n, i);
		abort();
	}
	dm_msg_release(&msg);
	CHECK(msg.tail == NULL && msg.ntail == 0);
	return 0;
}
