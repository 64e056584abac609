/* A small driver around Debian's libspandsp, for bench/dsp.py to run the same signals through
 * spandsp's DTMF receiver and ADSI (caller ID) receiver as through linerec's.
 *
 *   spandsp_driver dtmf  < audio.s16le    prints "dtmf <digit>" per digit
 *   spandsp_driver class < audio.s16le    prints "cid <hex bytes>" per Bell 202 message
 *   spandsp_driver clip  < audio.s16le    the same for V.23 (ETSI CLIP)
 *
 * Input: raw signed 16-bit little-endian mono at 8000 Hz. Built by bench/dsp.py. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <spandsp.h>

static void on_digits(void *user_data, const char *digits, int len)
{
    (void) user_data;
    for (int i = 0; i < len; i++)
        printf("dtmf %c\n", digits[i]);
}

static void on_message(void *user_data, const uint8_t *msg, int len)
{
    (void) user_data;
    if (len <= 0)
        return; /* a status report, not a message */
    printf("cid ");
    for (int i = 0; i < len; i++)
        printf("%02x", msg[i]);
    printf("\n");
}

int main(int argc, char **argv)
{
    int16_t block[160];
    size_t got;
    if (argc != 2) {
        fprintf(stderr, "usage: %s dtmf|class|clip < audio.s16le\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "dtmf") == 0) {
        dtmf_rx_state_t *rx = dtmf_rx_init(NULL, on_digits, NULL);
        while ((got = fread(block, sizeof(int16_t), 160, stdin)) > 0)
            dtmf_rx(rx, block, (int) got);
    } else {
        int standard = strcmp(argv[1], "clip") == 0 ? ADSI_STANDARD_CLIP : ADSI_STANDARD_CLASS;
        adsi_rx_state_t *rx = adsi_rx_init(NULL, standard, on_message, NULL);
        while ((got = fread(block, sizeof(int16_t), 160, stdin)) > 0)
            adsi_rx(rx, block, (int) got);
    }
    fflush(stdout);
    return 0;
}
