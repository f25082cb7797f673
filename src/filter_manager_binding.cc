// The JS-facing side of the filter-manager calls (src/win/filter_manager.h). Each runs off the
// JS thread as a PoolJob and settles its promise once; lib/filter-manager.ts parses the
// information buffers.
#include "filter_manager_binding.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "js_values.h"
#include "pool_job.h"
#include "win/filter_manager.h"

namespace fltport {

namespace {

// What a call hands back: nothing, information buffers, or a name.
struct ManagerOutcome {
  enum class Kind { kNothing, kBuffers, kBuffer, kText } kind = Kind::kNothing;
  std::vector<InformationBuffer> buffers;
  std::wstring text;
};

class ManagerJob : public PoolJob {
 public:
  using Operation = std::function<bool(ManagerOutcome*, Failure*)>;
  ManagerJob(Napi::Env env, Operation operation) : PoolJob(env), operation_(std::move(operation)) {}

 protected:
  // Loading, unloading, attaching and detaching run a driver's code (DriverEntry, its
  // InstanceSetup, ...), which takes as long as it takes.
  bool MayBlock() const override { return true; }

  bool Call(Failure* failure) override { return operation_(&outcome_, failure); }

  Napi::Value Result(Napi::Env env) override {
    switch (outcome_.kind) {
      case ManagerOutcome::Kind::kNothing:
        return env.Undefined();
      case ManagerOutcome::Kind::kBuffer:
        return BufferToJs(env, outcome_.buffers.front());
      case ManagerOutcome::Kind::kBuffers: {
        Napi::Array array = Napi::Array::New(env, outcome_.buffers.size());
        for (uint32_t i = 0; i < outcome_.buffers.size(); ++i) array.Set(i, BufferToJs(env, outcome_.buffers[i]));
        return array;
      }
      case ManagerOutcome::Kind::kText:
        return Napi::String::New(env, std::u16string(outcome_.text.begin(), outcome_.text.end()));
    }
    return env.Undefined();
  }

 private:
  // A copy into a Node-owned buffer: Electron refuses external buffers.
  static Napi::Value BufferToJs(Napi::Env env, const InformationBuffer& buffer) {
    return Napi::Buffer<uint8_t>::Copy(env, buffer.data(), buffer.size());
  }

  Operation operation_;
  ManagerOutcome outcome_;
};

Napi::Value Submit(Napi::Env env, ManagerJob::Operation operation) {
  return PoolJob::Submit(env, std::make_unique<ManagerJob>(env, std::move(operation)));
}

// An optional name: undefined or null is the empty string, which the calls take as "none".
bool ReadOptionalName(const Napi::Value& value, const char* name, size_t maxUnits, std::wstring* out) {
  out->clear();
  return value.IsUndefined() || value.IsNull() || ReadString(value, name, maxUnits, out);
}

// An enumeration whose calls fill `buffers`.
ManagerJob::Operation Enumeration(std::function<bool(std::vector<InformationBuffer>*, Failure*)> find) {
  return [find = std::move(find)](ManagerOutcome* outcome, Failure* failure) {
    outcome->kind = ManagerOutcome::Kind::kBuffers;
    return find(&outcome->buffers, failure);
  };
}

// findFilters(informationClass): Promise<Buffer[]>, one buffer per FilterFindFirst/Next.
Napi::Value FindFiltersJs(const Napi::CallbackInfo& info) {
  uint32_t cls = 0;
  if (!ReadUint32(info[0], "informationClass", 0, kMaxFilterInformationClass, &cls)) return info.Env().Undefined();
  return Submit(info.Env(), Enumeration([cls](auto* entries, Failure* failure) { return FindFilters(cls, entries, failure); }));
}

// findInstances(filterName, informationClass): Promise<Buffer[]>
Napi::Value FindInstancesJs(const Napi::CallbackInfo& info) {
  std::wstring filter;
  uint32_t cls = 0;
  if (!ReadString(info[0], "filterName", kMaxFilterNameUnits, &filter) ||
      !ReadUint32(info[1], "informationClass", 0, kMaxInstanceInformationClass, &cls)) {
    return info.Env().Undefined();
  }
  return Submit(info.Env(), Enumeration([filter, cls](auto* entries, Failure* failure) {
                  return FindInstances(filter, cls, entries, failure);
                }));
}

// findVolumes(informationClass): Promise<Buffer[]>
Napi::Value FindVolumesJs(const Napi::CallbackInfo& info) {
  uint32_t cls = 0;
  if (!ReadUint32(info[0], "informationClass", 0, kMaxVolumeInformationClass, &cls)) return info.Env().Undefined();
  return Submit(info.Env(), Enumeration([cls](auto* entries, Failure* failure) { return FindVolumes(cls, entries, failure); }));
}

// findVolumeInstances(volumeName, informationClass): Promise<Buffer[]>
Napi::Value FindVolumeInstancesJs(const Napi::CallbackInfo& info) {
  std::wstring volume;
  uint32_t cls = 0;
  if (!ReadString(info[0], "volumeName", kMaxVolumeNameUnits, &volume) ||
      !ReadUint32(info[1], "informationClass", 0, kMaxInstanceInformationClass, &cls)) {
    return info.Env().Undefined();
  }
  return Submit(info.Env(), Enumeration([volume, cls](auto* entries, Failure* failure) {
                  return FindVolumeInstances(volume, cls, entries, failure);
                }));
}

// filterInformation(filterName, informationClass): Promise<Buffer>
Napi::Value FilterInformationJs(const Napi::CallbackInfo& info) {
  std::wstring filter;
  uint32_t cls = 0;
  if (!ReadString(info[0], "filterName", kMaxFilterNameUnits, &filter) ||
      !ReadUint32(info[1], "informationClass", 0, kMaxFilterInformationClass, &cls)) {
    return info.Env().Undefined();
  }
  return Submit(info.Env(), [filter, cls](ManagerOutcome* outcome, Failure* failure) {
    outcome->kind = ManagerOutcome::Kind::kBuffer;
    outcome->buffers.emplace_back();
    return GetFilterInformation(filter, cls, &outcome->buffers.front(), failure);
  });
}

// loadFilter(name) / unloadFilter(name): Promise<void>
template <bool (*Operation)(const std::wstring&, Failure*)>
Napi::Value FilterOperationJs(const Napi::CallbackInfo& info) {
  std::wstring filter;
  if (!ReadString(info[0], "filterName", kMaxFilterNameUnits, &filter)) return info.Env().Undefined();
  return Submit(info.Env(), [filter](ManagerOutcome*, Failure* failure) { return Operation(filter, failure); });
}

// attach(filterName, volumeName, instanceName | null, altitude | null): Promise<string>, the
// name of the instance created.
Napi::Value AttachJs(const Napi::CallbackInfo& info) {
  AttachRequest request;
  if (!ReadString(info[0], "filterName", kMaxFilterNameUnits, &request.filterName) ||
      !ReadString(info[1], "volumeName", kMaxVolumeNameUnits, &request.volumeName) ||
      !ReadOptionalName(info[2], "instanceName", kMaxInstanceNameUnits, &request.instanceName) ||
      !ReadOptionalName(info[3], "altitude", kMaxAltitudeUnits, &request.altitude)) {
    return info.Env().Undefined();
  }
  return Submit(info.Env(), [request](ManagerOutcome* outcome, Failure* failure) {
    outcome->kind = ManagerOutcome::Kind::kText;
    return Attach(request, &outcome->text, failure);
  });
}

// detach(filterName, volumeName, instanceName | null): Promise<void>
Napi::Value DetachJs(const Napi::CallbackInfo& info) {
  std::wstring filter;
  std::wstring volume;
  std::wstring instance;
  if (!ReadString(info[0], "filterName", kMaxFilterNameUnits, &filter) ||
      !ReadString(info[1], "volumeName", kMaxVolumeNameUnits, &volume) ||
      !ReadOptionalName(info[2], "instanceName", kMaxInstanceNameUnits, &instance)) {
    return info.Env().Undefined();
  }
  return Submit(info.Env(), [filter, volume, instance](ManagerOutcome*, Failure* failure) {
    return Detach(filter, volume, instance, failure);
  });
}

// dosName(volumeName): Promise<string>, "" for a volume with neither a letter nor a mount point.
Napi::Value DosNameJs(const Napi::CallbackInfo& info) {
  std::wstring volume;
  if (!ReadString(info[0], "volumeName", kMaxVolumeNameUnits, &volume)) return info.Env().Undefined();
  return Submit(info.Env(), [volume](ManagerOutcome* outcome, Failure* failure) {
    outcome->kind = ManagerOutcome::Kind::kText;
    return GetDosName(volume, &outcome->text, failure);
  });
}

}  // namespace

void InitFilterManager(Napi::Env env, Napi::Object exports) {
  Napi::Object manager = Napi::Object::New(env);
  manager.Set("findFilters", Napi::Function::New<FindFiltersJs>(env, "findFilters"));
  manager.Set("findInstances", Napi::Function::New<FindInstancesJs>(env, "findInstances"));
  manager.Set("findVolumes", Napi::Function::New<FindVolumesJs>(env, "findVolumes"));
  manager.Set("findVolumeInstances", Napi::Function::New<FindVolumeInstancesJs>(env, "findVolumeInstances"));
  manager.Set("filterInformation", Napi::Function::New<FilterInformationJs>(env, "filterInformation"));
  manager.Set("loadFilter", Napi::Function::New<FilterOperationJs<LoadFilter>>(env, "loadFilter"));
  manager.Set("unloadFilter", Napi::Function::New<FilterOperationJs<UnloadFilter>>(env, "unloadFilter"));
  manager.Set("attach", Napi::Function::New<AttachJs>(env, "attach"));
  manager.Set("detach", Napi::Function::New<DetachJs>(env, "detach"));
  manager.Set("dosName", Napi::Function::New<DosNameJs>(env, "dosName"));
  exports.Set("filterManager", manager);
}

}  // namespace fltport
