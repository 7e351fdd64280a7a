/*
 * nullmilter.c - the benchmark's floor: a libmilter milter that does
 * nothing.
 *
 * It asks the MTA to send no stage at all (SMFIP_NOCONNECT ... NOUNKNOWN)
 * and accepts every message, so what attaching it costs Postfix is the
 * price of the milter protocol itself: Postfix connecting, negotiating,
 * handing the connection to cleanup and closing it, and libmilter taking
 * each session on a thread.  `bench --milter` runs Postfix alone, with
 * this, and with milterd, so milterd's own share can be told from the
 * share no libmilter milter can avoid.
 *
 * Usage: nullmilter unix:/path/to/socket
 */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Every stage the MTA could send, switched off; no reply is needed for
 * any of them either. */
#define NULL_STEPS (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | \
	SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | \
	SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_HDR)

static sfsistat
null_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
	       unsigned long f2, unsigned long f3, unsigned long *pf0,
	       unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	(void)ctx;
	(void)f0;
	(void)f2;
	(void)f3;
	*pf0 = 0;
	*pf1 = NULL_STEPS & f1;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat
null_eom(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_ACCEPT;
}

int
main(int argc, char **argv)
{
	struct smfiDesc desc;

	if (argc != 2) {
		fprintf(stderr, "usage: nullmilter unix:/path\n");
		return 2;
	}
	memset(&desc, 0, sizeof(desc));
	desc.xxfi_name = "nullmilter";
	desc.xxfi_version = SMFI_VERSION;
	desc.xxfi_eom = null_eom;
	desc.xxfi_negotiate = null_negotiate;
	/* Postfix's smtpd runs as another user than the benchmark. */
	umask(0);
	if (smfi_setconn(argv[1]) != MI_SUCCESS ||
	    smfi_register(desc) != MI_SUCCESS) {
		fprintf(stderr, "nullmilter: cannot set up %s\n", argv[1]);
		return 1;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
