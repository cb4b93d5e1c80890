// serving_check: loads an rq_keras SavedModel through the TensorFlow C++
// loader (the same `tensorflow::LoadSavedModel` path TF Serving uses), runs one
// signature on inputs read from a file and prints the outputs as JSON.
//
// It exists to prove that an exported model serves without Python: no custom
// Python ops, no py_function, no dependence on tf_keras at load time.
//
// Usage:
//   serving_check --model-dir DIR --signature NAME --inputs FILE
//                 [--repeat N] [--warmup W] [--feed-as-is]
//
// Inputs are checked against the SignatureDef's dtypes and shapes first
// (exit 2 naming the key); --feed-as-is skips that and feeds them as TF
// Serving does, so the model's own graph reports what is wrong.
//
// FILE is a TFRecord file; every record is a serialized
// tensorflow.NamedTensorProto whose `name` is a signature input key and whose
// `tensor` is that input's value. rq_keras.serving.cpp_check.write_inputs writes it.
//
// On success, stdout holds exactly one JSON object:
//   {"signature": NAME,
//    "outputs": {KEY: {"dtype": "float32", "shape": [2], "values": [..]}, ..},
//    "latency_ms": {"runs": N, "warmup": W, "p50": .., "p99": .., "mean": ..,
//                   "min": .., "max": ..}}
// Output keys are sorted; values are flattened in row-major order and come
// from the last timed run. Encoding rules:
//   * float32 uses %.9g and float64 %.17g, so values round-trip exactly.
//     JSON has no NaN/Inf literals, so those are written as the strings
//     "nan", "inf" and "-inf" (Python's float() parses all three).
//   * Strings are byte strings in TensorFlow, not necessarily UTF-8. Every
//     byte is written as the code point of the same value (printable ASCII
//     as-is, everything else as \u00XX), so `s.encode("latin-1")` recovers
//     the exact bytes.
// Latency is wall-clock time per Session::Run call in milliseconds; p50/p99
// use linear interpolation between order statistics (numpy's default).
//
// Exit status: 0 on success; 1 when loading the model or running the session
// fails (stderr holds "error: " + TensorFlow's status message); 2 for usage
// errors, unknown signatures and inputs that do not match the signature
// (stderr holds "serving_check: " + a message naming the bad flag or key).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_set>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensorflow/cc/saved_model/constants.h"
#include "tensorflow/cc/saved_model/loader.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.pb.h"
#include "tensorflow/core/lib/io/record_reader.h"
#include "tensorflow/core/platform/env.h"
#include "tensorflow/core/protobuf/meta_graph.pb.h"
#include "tensorflow/core/protobuf/named_tensor.pb.h"
#include "tensorflow/core/public/session.h"

namespace {

constexpr int kExitTensorFlowError = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "usage: serving_check --model-dir DIR --signature NAME --inputs FILE "
    "[--repeat N] [--warmup W] [--feed-as-is]\n";

// Thrown for conditions that map to exit status 2; caught in main() so that
// every such path prints one message and exits the same way.
struct UsageError {
  std::string message;
};

struct Options {
  std::string model_dir;
  std::string signature;
  std::string inputs_path;
  int repeat = 1;
  int warmup = 0;
  // Skip the dtype and shape checks against the SignatureDef and feed the
  // tensors as they are, as TF Serving does: what fails then is the model's
  // own graph, which is what a serving client would see.
  bool feed_as_is = false;
};

int ParseCount(const std::string& flag, const std::string& text, int minimum) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < minimum || value > 1000000) {
    throw UsageError{flag + " expects an integer in [" + std::to_string(minimum) +
                     ", 1000000], got '" + text + "'"};
  }
  return static_cast<int>(value);
}

Options ParseArgs(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    // Accept both "--flag value" and "--flag=value".
    const auto eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (flag == "--feed-as-is") {
      options.feed_as_is = true;
      continue;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      throw UsageError{"missing value for " + flag};
    }
    if (flag == "--model-dir") {
      options.model_dir = value;
    } else if (flag == "--signature") {
      options.signature = value;
    } else if (flag == "--inputs") {
      options.inputs_path = value;
    } else if (flag == "--repeat") {
      options.repeat = ParseCount(flag, value, 1);
    } else if (flag == "--warmup") {
      options.warmup = ParseCount(flag, value, 0);
    } else {
      throw UsageError{"unknown flag " + flag};
    }
  }
  if (options.model_dir.empty()) throw UsageError{"--model-dir is required"};
  if (options.signature.empty()) throw UsageError{"--signature is required"};
  if (options.inputs_path.empty()) throw UsageError{"--inputs is required"};
  return options;
}

// numpy-style dtype names, so the Python side can pass them to np.dtype().
// Returns an empty string for dtypes this tool does not print.
std::string DtypeName(tensorflow::DataType dtype) {
  switch (dtype) {
    case tensorflow::DT_FLOAT: return "float32";
    case tensorflow::DT_DOUBLE: return "float64";
    case tensorflow::DT_INT8: return "int8";
    case tensorflow::DT_INT16: return "int16";
    case tensorflow::DT_INT32: return "int32";
    case tensorflow::DT_INT64: return "int64";
    case tensorflow::DT_UINT8: return "uint8";
    case tensorflow::DT_UINT16: return "uint16";
    case tensorflow::DT_UINT32: return "uint32";
    case tensorflow::DT_UINT64: return "uint64";
    case tensorflow::DT_BOOL: return "bool";
    case tensorflow::DT_STRING: return "string";
    default: return "";
  }
}

// Name used in messages about inputs, which may have any dtype.
std::string DescribeDtype(tensorflow::DataType dtype) {
  const std::string name = DtypeName(dtype);
  return name.empty() ? tensorflow::DataTypeString(dtype) : name;
}

std::string JoinKeys(const std::vector<std::string>& keys) {
  std::string joined;
  for (const auto& key : keys) {
    if (!joined.empty()) joined += ", ";
    joined += "'" + key + "'";
  }
  return joined;
}

template <typename Map>
std::vector<std::string> SortedKeys(const Map& map) {
  std::vector<std::string> keys;
  for (const auto& entry : map) keys.push_back(entry.first);
  std::sort(keys.begin(), keys.end());
  return keys;
}

void AppendJsonString(const char* data, size_t size, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (size_t i = 0; i < size; ++i) {
    const auto byte = static_cast<unsigned char>(data[i]);
    if (byte == '"' || byte == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(byte));
    } else if (byte >= 0x20 && byte < 0x7f) {
      out->push_back(static_cast<char>(byte));
    } else {
      // One code point per byte (see the header comment): keeps the output
      // valid JSON for arbitrary bytes and lossless.
      out->append("\\u00");
      out->push_back(kHex[byte >> 4]);
      out->push_back(kHex[byte & 0xf]);
    }
  }
  out->push_back('"');
}

void AppendJsonString(const std::string& text, std::string* out) {
  AppendJsonString(text.data(), text.size(), out);
}

void AppendFloat(double value, const char* format, std::string* out) {
  if (std::isnan(value)) {
    out->append("\"nan\"");
  } else if (std::isinf(value)) {
    out->append(value > 0 ? "\"inf\"" : "\"-inf\"");
  } else {
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), format, value);
    out->append(buffer);
  }
}

template <typename T>
void AppendIntegers(const tensorflow::Tensor& tensor, std::string* out) {
  const auto flat = tensor.flat<T>();
  for (int64_t i = 0; i < flat.size(); ++i) {
    if (i > 0) out->push_back(',');
    // Widen int8/uint8 so they print as numbers, not characters.
    if constexpr (std::is_signed_v<T>) {
      out->append(std::to_string(static_cast<long long>(flat(i))));
    } else {
      out->append(std::to_string(static_cast<unsigned long long>(flat(i))));
    }
  }
}

// Callers check DtypeName(tensor.dtype()) first; other dtypes append nothing.
void AppendValues(const tensorflow::Tensor& tensor, std::string* out) {
  out->push_back('[');
  switch (tensor.dtype()) {
    case tensorflow::DT_FLOAT: {
      const auto flat = tensor.flat<float>();
      for (int64_t i = 0; i < flat.size(); ++i) {
        if (i > 0) out->push_back(',');
        AppendFloat(flat(i), "%.9g", out);
      }
      break;
    }
    case tensorflow::DT_DOUBLE: {
      const auto flat = tensor.flat<double>();
      for (int64_t i = 0; i < flat.size(); ++i) {
        if (i > 0) out->push_back(',');
        AppendFloat(flat(i), "%.17g", out);
      }
      break;
    }
    case tensorflow::DT_INT8: AppendIntegers<tensorflow::int8>(tensor, out); break;
    case tensorflow::DT_INT16: AppendIntegers<tensorflow::int16>(tensor, out); break;
    case tensorflow::DT_INT32: AppendIntegers<tensorflow::int32>(tensor, out); break;
    case tensorflow::DT_INT64: AppendIntegers<int64_t>(tensor, out); break;
    case tensorflow::DT_UINT8: AppendIntegers<tensorflow::uint8>(tensor, out); break;
    case tensorflow::DT_UINT16: AppendIntegers<tensorflow::uint16>(tensor, out); break;
    case tensorflow::DT_UINT32: AppendIntegers<tensorflow::uint32>(tensor, out); break;
    case tensorflow::DT_UINT64: AppendIntegers<tensorflow::uint64>(tensor, out); break;
    case tensorflow::DT_BOOL: {
      const auto flat = tensor.flat<bool>();
      for (int64_t i = 0; i < flat.size(); ++i) {
        if (i > 0) out->push_back(',');
        out->append(flat(i) ? "true" : "false");
      }
      break;
    }
    case tensorflow::DT_STRING: {
      const auto flat = tensor.flat<tensorflow::tstring>();
      for (int64_t i = 0; i < flat.size(); ++i) {
        if (i > 0) out->push_back(',');
        AppendJsonString(flat(i).data(), flat(i).size(), out);
      }
      break;
    }
    default:
      break;
  }
  out->push_back(']');
}

// Reads every NamedTensorProto record of `path` into name -> Tensor.
std::map<std::string, tensorflow::Tensor> ReadInputs(const std::string& path) {
  std::unique_ptr<tensorflow::RandomAccessFile> file;
  tensorflow::Status status =
      tensorflow::Env::Default()->NewRandomAccessFile(path, &file);
  if (!status.ok()) {
    throw UsageError{"cannot open inputs file '" + path + "': " +
                     std::string(status.message())};
  }
  tensorflow::io::SequentialRecordReader reader(file.get());
  std::map<std::string, tensorflow::Tensor> inputs;
  tensorflow::tstring record;
  for (int index = 0;; ++index) {
    status = reader.ReadRecord(&record);
    if (tensorflow::errors::IsOutOfRange(status)) break;
    const std::string where =
        "record " + std::to_string(index) + " of '" + path + "'";
    if (!status.ok()) {
      throw UsageError{"cannot read " + where + ": " + std::string(status.message())};
    }
    tensorflow::NamedTensorProto named;
    if (!named.ParseFromArray(record.data(), static_cast<int>(record.size()))) {
      throw UsageError{where + " is not a serialized tensorflow.NamedTensorProto"};
    }
    tensorflow::Tensor tensor;
    if (!tensor.FromProto(named.tensor())) {
      throw UsageError{where + " (input '" + named.name() +
                       "') holds an invalid TensorProto"};
    }
    if (!inputs.emplace(named.name(), std::move(tensor)).second) {
      throw UsageError{"input '" + named.name() + "' appears more than once in '" +
                       path + "'"};
    }
  }
  return inputs;
}

// Pairs every signature input with its fed tensor, checking key sets, dtypes
// and shapes up front: the session's own errors for these cases name graph
// placeholders rather than signature keys.
std::vector<std::pair<std::string, tensorflow::Tensor>> BuildFeeds(
    const tensorflow::SignatureDef& signature, const std::string& signature_name,
    std::map<std::string, tensorflow::Tensor> inputs, bool feed_as_is) {
  std::vector<std::string> missing;
  std::vector<std::pair<std::string, tensorflow::Tensor>> feeds;
  for (const auto& key : SortedKeys(signature.inputs())) {
    const tensorflow::TensorInfo& info = signature.inputs().at(key);
    auto found = inputs.find(key);
    if (found == inputs.end()) {
      missing.push_back(key);
      continue;
    }
    if (info.encoding_case() != tensorflow::TensorInfo::kName) {
      throw UsageError{"input '" + key + "' of signature '" + signature_name +
                       "' is a composite (sparse or ragged) tensor, which "
                       "serving_check does not feed"};
    }
    const tensorflow::Tensor& tensor = found->second;
    if (feed_as_is) {
      feeds.emplace_back(info.name(), tensor);
      inputs.erase(found);
      continue;
    }
    if (tensor.dtype() != info.dtype()) {
      throw UsageError{"input '" + key + "' has dtype " + DescribeDtype(tensor.dtype()) +
                       " but signature '" + signature_name + "' expects " +
                       DescribeDtype(info.dtype())};
    }
    tensorflow::PartialTensorShape expected;
    if (tensorflow::PartialTensorShape::BuildPartialTensorShape(info.tensor_shape(),
                                                                &expected)
            .ok() &&
        !expected.IsCompatibleWith(tensorflow::PartialTensorShape(tensor.shape().dim_sizes()))) {
      throw UsageError{"input '" + key + "' has shape " + tensor.shape().DebugString() +
                       " but signature '" + signature_name + "' expects " +
                       expected.DebugString()};
    }
    feeds.emplace_back(info.name(), tensor);
    inputs.erase(found);
  }
  if (!missing.empty()) {
    throw UsageError{"signature '" + signature_name + "' needs input(s) " +
                     JoinKeys(missing) + " that the inputs file does not provide"};
  }
  if (!inputs.empty()) {
    throw UsageError{"inputs file provides " + JoinKeys(SortedKeys(inputs)) +
                     " which signature '" + signature_name + "' does not accept (it takes " +
                     JoinKeys(SortedKeys(signature.inputs())) + ")"};
  }
  return feeds;
}

// Linear interpolation between order statistics; `sorted` is non-empty.
double Percentile(const std::vector<double>& sorted, double fraction) {
  const double position = fraction * static_cast<double>(sorted.size() - 1);
  const size_t lower = static_cast<size_t>(std::floor(position));
  const size_t upper = std::min(lower + 1, sorted.size() - 1);
  return sorted[lower] + (position - lower) * (sorted[upper] - sorted[lower]);
}

void AppendLatency(std::vector<double> latencies, int warmup, std::string* out) {
  std::sort(latencies.begin(), latencies.end());
  double total = 0;
  for (double latency : latencies) total += latency;
  out->append("{\"runs\":" + std::to_string(latencies.size()));
  out->append(",\"warmup\":" + std::to_string(warmup));
  const std::pair<const char*, double> stats[] = {
      {"p50", Percentile(latencies, 0.50)},
      {"p99", Percentile(latencies, 0.99)},
      {"mean", total / latencies.size()},
      {"min", latencies.front()},
      {"max", latencies.back()},
  };
  for (const auto& [name, value] : stats) {
    out->append(",\"" + std::string(name) + "\":");
    AppendFloat(value, "%.6f", out);
  }
  out->push_back('}');
}

int Run(const Options& options) {
  tensorflow::SavedModelBundle bundle;
  tensorflow::Status status = tensorflow::LoadSavedModel(
      tensorflow::SessionOptions(), tensorflow::RunOptions(), options.model_dir,
      {"serve"}, &bundle);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return kExitTensorFlowError;
  }

  // tf.saved_model.save records the table/variable initializer as a
  // signature too; it is not servable, so it is neither run nor listed.
  auto signatures = bundle.meta_graph_def.signature_def();
  signatures.erase(tensorflow::kSavedModelInitOpSignatureKey);
  const auto found = signatures.find(options.signature);
  if (found == signatures.end()) {
    throw UsageError{"model '" + options.model_dir + "' has no signature '" +
                     options.signature + "'; available signatures: " +
                     JoinKeys(SortedKeys(signatures))};
  }
  const tensorflow::SignatureDef& signature = found->second;

  const std::vector<std::string> output_keys = SortedKeys(signature.outputs());
  std::vector<std::string> fetches;
  for (const auto& key : output_keys) {
    const tensorflow::TensorInfo& info = signature.outputs().at(key);
    if (info.encoding_case() != tensorflow::TensorInfo::kName) {
      throw UsageError{"output '" + key + "' of signature '" + options.signature +
                       "' is a composite (sparse or ragged) tensor, which "
                       "serving_check does not fetch"};
    }
    fetches.push_back(info.name());
  }

  const auto feeds =
      BuildFeeds(signature, options.signature, ReadInputs(options.inputs_path),
                 options.feed_as_is);

  std::vector<tensorflow::Tensor> outputs;
  std::vector<double> latencies;
  for (int i = 0; i < options.warmup + options.repeat; ++i) {
    outputs.clear();
    const auto start = std::chrono::steady_clock::now();
    status = bundle.session->Run(feeds, fetches, {}, &outputs);
    const auto stop = std::chrono::steady_clock::now();
    if (!status.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
      return kExitTensorFlowError;
    }
    if (i >= options.warmup) {
      latencies.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    }
  }

  for (size_t i = 0; i < output_keys.size(); ++i) {
    if (DtypeName(outputs[i].dtype()).empty()) {
      std::fprintf(stderr, "error: output '%s' has dtype %s, which serving_check cannot print\n",
                   output_keys[i].c_str(), DescribeDtype(outputs[i].dtype()).c_str());
      return kExitTensorFlowError;
    }
  }

  std::string json = "{\"signature\":";
  AppendJsonString(options.signature, &json);
  json.append(",\"outputs\":{");
  for (size_t i = 0; i < output_keys.size(); ++i) {
    const tensorflow::Tensor& tensor = outputs[i];
    if (i > 0) json.push_back(',');
    AppendJsonString(output_keys[i], &json);
    json.append(":{\"dtype\":\"" + DtypeName(tensor.dtype()) + "\",\"shape\":[");
    for (int d = 0; d < tensor.dims(); ++d) {
      if (d > 0) json.push_back(',');
      json.append(std::to_string(tensor.dim_size(d)));
    }
    json.append("],\"values\":");
    AppendValues(tensor, &json);
    json.push_back('}');
  }
  json.append("},\"latency_ms\":");
  AppendLatency(std::move(latencies), options.warmup, &json);
  json.append("}\n");
  std::fwrite(json.data(), 1, json.size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : kExitTensorFlowError;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const UsageError& error) {
    std::fprintf(stderr, "serving_check: %s\n", error.message.c_str());
    if (argc <= 1) std::fputs(kUsage, stderr);
    return kExitUsage;
  }
}
