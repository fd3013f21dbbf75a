/* Serve an mtkeras export from C, with no Python in the process: the C++ SavedModel loader TF Serving uses
 * (SavedModelBundle, through the C API's TF_LoadSessionFromSavedModel, tag "serve").
 *
 *   serve_c EXPORT_DIR SIGNATURE_FILE TEXTS_FILE OP_LIBRARY...
 *
 * OP_LIBRARY: the TF Text kernels the export's tokenizer needs, loaded with TF_LoadLibrary before the model.
 * SIGNATURE_FILE: first line the input tensor ("op:index" of serving_default's `texts`), then one output per
 * line: "key op:index". TEXTS_FILE: one text per line, hex-encoded (any bytes: NUL, invalid UTF-8).
 * Prints, per output: "output KEY DTYPE NDIMS DIM..." and then one value per line (floats "%.9g", integers,
 * strings hex-encoded). Exit code 1 with a message on stderr on any failure. Built and run by
 * tests/test_c_serving.py against the installed tensorflow wheel's headers and libtensorflow_cc.so.2.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/c_api.h"
#include "tensorflow/c/tf_tstring.h"

static void fail(const char *what, TF_Status *status) {
  fprintf(stderr, "serve_c: %s: %s\n", what, status ? TF_Message(status) : "");
  exit(1);
}

static int hex_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static char *read_line(FILE *file) { /* one line without its newline, malloc'd; NULL at the end */
  size_t size = 0, cap = 256;
  char *line = malloc(cap);
  int c;
  while ((c = fgetc(file)) != EOF && c != '\n') {
    if (size + 1 >= cap) line = realloc(line, cap *= 2);
    line[size++] = (char)c;
  }
  if (c == EOF && size == 0) {
    free(line);
    return NULL;
  }
  line[size] = '\0';
  return line;
}

static TF_Output tensor(TF_Graph *graph, const char *name) { /* "op:index" */
  char op[1024];
  const char *colon = strrchr(name, ':');
  size_t length = colon ? (size_t)(colon - name) : strlen(name);
  if (length >= sizeof op) fail("tensor name too long", NULL);
  memcpy(op, name, length);
  op[length] = '\0';
  TF_Output out = {TF_GraphOperationByName(graph, op), colon ? atoi(colon + 1) : 0};
  if (out.oper == NULL) {
    fprintf(stderr, "serve_c: no operation %s in the graph\n", op);
    exit(1);
  }
  return out;
}

static void print_hex(const char *data, size_t size) {
  for (size_t i = 0; i < size; i++) printf("%02x", (unsigned char)data[i]);
  printf("\n");
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: serve_c EXPORT_DIR SIGNATURE_FILE TEXTS_FILE OP_LIBRARY...\n");
    return 2;
  }
  TF_Status *status = TF_NewStatus();
  for (int i = 4; i < argc; i++) {
    TF_Library *library = TF_LoadLibrary(argv[i], status);
    if (TF_GetCode(status) != TF_OK) fail(argv[i], status);
    (void)library; /* kept loaded for the life of the process */
  }

  TF_Graph *graph = TF_NewGraph();
  TF_SessionOptions *options = TF_NewSessionOptions();
  const char *tags[] = {"serve"};
  TF_Session *session = TF_LoadSessionFromSavedModel(options, NULL, argv[1], tags, 1, graph, NULL, status);
  if (TF_GetCode(status) != TF_OK) fail("TF_LoadSessionFromSavedModel", status);

  FILE *signature = fopen(argv[2], "r");
  if (signature == NULL) fail("cannot open the signature file", NULL);
  char *input_name = read_line(signature);
  if (input_name == NULL) fail("empty signature file", NULL);
  TF_Output input = tensor(graph, input_name);
  char *keys[256];
  TF_Output outputs[256];
  int n_outputs = 0;
  for (char *line; (line = read_line(signature)) != NULL && n_outputs < 256;) {
    char *space = strchr(line, ' ');
    if (space == NULL) fail("signature line without a space", NULL);
    *space = '\0';
    keys[n_outputs] = line;
    outputs[n_outputs++] = tensor(graph, space + 1);
  }
  fclose(signature);

  FILE *texts_file = fopen(argv[3], "r");
  if (texts_file == NULL) fail("cannot open the texts file", NULL);
  char *lines[65536];
  int64_t n_texts = 0;
  for (char *line; (line = read_line(texts_file)) != NULL && n_texts < 65536;) lines[n_texts++] = line;
  fclose(texts_file);

  TF_Tensor *texts = TF_AllocateTensor(TF_STRING, &n_texts, 1, sizeof(TF_TString) * (size_t)n_texts);
  TF_TString *strings = (TF_TString *)TF_TensorData(texts);
  for (int64_t i = 0; i < n_texts; i++) {
    size_t hex_size = strlen(lines[i]), size = hex_size / 2;
    char *bytes = malloc(size + 1);
    for (size_t j = 0; j < size; j++) {
      int high = hex_value(lines[i][2 * j]), low = hex_value(lines[i][2 * j + 1]);
      if (high < 0 || low < 0) fail("texts file: not hex", NULL);
      bytes[j] = (char)(high * 16 + low);
    }
    TF_TString_Init(&strings[i]);
    TF_TString_Copy(&strings[i], bytes, size);
    free(bytes);
  }

  TF_Tensor *values[256] = {0};
  TF_SessionRun(session, NULL, &input, &texts, 1, outputs, values, n_outputs, NULL, 0, NULL, status);
  if (TF_GetCode(status) != TF_OK) fail("TF_SessionRun", status);

  for (int k = 0; k < n_outputs; k++) {
    TF_Tensor *value = values[k];
    int ndims = TF_NumDims(value);
    int64_t count = 1;
    printf("output %s %d %d", keys[k], (int)TF_TensorType(value), ndims);
    for (int d = 0; d < ndims; d++) {
      printf(" %lld", (long long)TF_Dim(value, d));
      count *= TF_Dim(value, d);
    }
    printf("\n");
    void *data = TF_TensorData(value);
    for (int64_t i = 0; i < count; i++) {
      switch (TF_TensorType(value)) {
        case TF_FLOAT: printf("%.9g\n", ((float *)data)[i]); break;
        case TF_INT32: printf("%d\n", ((int32_t *)data)[i]); break;
        case TF_INT64: printf("%lld\n", (long long)((int64_t *)data)[i]); break;
        case TF_BOOL: printf("%d\n", ((unsigned char *)data)[i]); break;
        case TF_STRING: {
          const TF_TString *s = &((const TF_TString *)data)[i];
          print_hex(TF_TString_GetDataPointer(s), TF_TString_GetSize(s));
          break;
        }
        default: fprintf(stderr, "serve_c: output %s has unsupported dtype %d\n", keys[k], TF_TensorType(value));
                 return 1;
      }
    }
    TF_DeleteTensor(value);
  }
  TF_DeleteTensor(texts);
  TF_CloseSession(session, status);
  TF_DeleteSession(session, status);
  TF_DeleteSessionOptions(options);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}
