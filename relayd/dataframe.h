/*
 * dataframe.h - the SMTP DATA and BDAT input framer of relayd.
 *
 * Pure: no I/O, no allocation.  The session hands it the bytes read from
 * the client and gets back, through an emit callback, the message
 * content: dot-unstuffed and with every line end a CRLF.
 *
 * DATA (RFC 5321 section 4.1.1.4).  Only the exact octets CR LF "." CR
 * LF end the message; the CR LF before the dot may be the implicit one
 * of the line after the 354 reply, so ".\r\n" as the first line ends an
 * empty message.  A bare LF (not after a CR) or a bare CR (not before an
 * LF) is counted and emitted as CRLF, but the line start it makes is
 * not a real one: it neither ends the message nor unstuffs a dot.  So
 * "\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n", "\r\n.\r" and the like never
 * end DATA here, whatever the next hop would make of them: that is what
 * closes SMTP smuggling (https://www.postfix.org/smtp-smuggling.html).
 * The host decides from bare_lf and bare_cr whether to refuse the
 * message (550 5.5.2) or accept it normalised.  NUL octets pass through.
 *
 * A line that starts, after a real CRLF, with "." loses that dot (RFC
 * 5321 section 4.5.2), whatever ends the line.  The host stuffs dots
 * again on output.
 *
 * BDAT (RFC 3030).  Every octet of a chunk is content; only line ends
 * are normalised, with the same counters.  A CR ending one chunk and an
 * LF starting the next make one CRLF.
 *
 * Usage: df_init() when the 354 is sent (or at the first BDAT), then
 * df_feed_data() on each read until *done, or df_feed_bdat() per chunk
 * and df_bdat_last() after the LAST one.  Call df_init() again for the
 * next message.
 */
#ifndef GATEHOUSE_DATAFRAME_H
#define GATEHOUSE_DATAFRAME_H

#include <stddef.h>

/* Receives content; n > 0.  Pieces are cut anywhere, even inside a
 * CRLF. */
typedef void (*df_emit_fn)(void *arg, const char *p, size_t n);

struct dataframe {
	int		state;		/* private */
	unsigned long	bare_lf;	/* LFs not preceded by CR */
	unsigned long	bare_cr;	/* CRs not followed by LF */
};

/* At the start of a line, nothing counted. */
void	df_init(struct dataframe *f);

/*
 * Consume DATA bytes.  Content goes to emit; a "." or ".\r" at a real
 * line start at the end of buf may still be the end of data, so it is
 * held in the state, not emitted, until the next call (a CR elsewhere is
 * emitted at once: it stays a CR whatever follows).  Returns the
 * number of bytes consumed: all n, unless the CR LF "." CR LF has been
 * seen, in which case *done is set to 1 and what follows it in buf (the
 * next pipelined command) is not consumed.  After the end, further calls
 * consume nothing and set *done again.
 */
size_t	df_feed_data(struct dataframe *f, const char *buf, size_t n,
	    df_emit_fn emit, void *arg, int *done);

/* One BDAT chunk: all n bytes are content. */
void	df_feed_bdat(struct dataframe *f, const char *buf, size_t n,
	    df_emit_fn emit, void *arg);

/* After the LAST chunk: a CR that ended it is bare; emit its LF. */
void	df_bdat_last(struct dataframe *f, df_emit_fn emit, void *arg);

#endif
