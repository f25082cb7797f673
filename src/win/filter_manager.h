// Plain C++ over fltlib.dll's filter-manager calls (enumeration, information, load, attach, DOS
// names); knows nothing of Node-API. Results are the raw information-class buffers fltlib
// fills: lib/filter-information.ts parses them, with bounds checks.
//
// These functions are resolved with GetProcAddress when first used, not imported: a fltlib.dll
// without one of them (the emulator's, or an older system's) must not stop the addon from
// loading. A missing one fails the call with ERROR_PROC_NOT_FOUND, named after it.
#pragma once

#include <windows.h>

#include <cstdint>
#include <string>
#include <vector>

#include "win/failure.h"

namespace fltport {

// What one FilterFindFirst/Next call filled: an information-class entry, possibly with more
// chained through NextEntryOffset.
using InformationBuffer = std::vector<uint8_t>;

// Name lengths the filter manager accepts (fltuserstructures.h): beyond them a name cannot match.
constexpr size_t kMaxFilterNameUnits = 255;
constexpr size_t kMaxInstanceNameUnits = 255;
constexpr size_t kMaxVolumeNameUnits = 1024;
// Altitudes are decimal strings such as "385100" or "370030.5".
constexpr size_t kMaxAltitudeUnits = 64;

// FILTER_INFORMATION_CLASS, INSTANCE_INFORMATION_CLASS, FILTER_VOLUME_INFORMATION_CLASS: the
// largest value each takes.
constexpr uint32_t kMaxFilterInformationClass = 2;
constexpr uint32_t kMaxInstanceInformationClass = 3;
constexpr uint32_t kMaxVolumeInformationClass = 1;

// Each returns true on success; on failure it fills `failure` with the call that failed.
// An empty enumeration (ERROR_NO_MORE_ITEMS from the first call) succeeds with no entries.

// FilterFindFirst/Next/Close.
bool FindFilters(uint32_t informationClass, std::vector<InformationBuffer>* entries, Failure* failure);
// FilterInstanceFindFirst/Next/Close: the instances of one filter.
bool FindInstances(const std::wstring& filterName, uint32_t informationClass, std::vector<InformationBuffer>* entries,
                   Failure* failure);
// FilterVolumeFindFirst/Next/Close.
bool FindVolumes(uint32_t informationClass, std::vector<InformationBuffer>* entries, Failure* failure);
// FilterVolumeInstanceFindFirst/Next/Close: the instances on one volume.
bool FindVolumeInstances(const std::wstring& volumeName, uint32_t informationClass,
                         std::vector<InformationBuffer>* entries, Failure* failure);
// FilterCreate, FilterGetInformation, FilterClose.
bool GetFilterInformation(const std::wstring& filterName, uint32_t informationClass, InformationBuffer* information,
                          Failure* failure);
// FilterLoad / FilterUnload (SeLoadDriverPrivilege).
bool LoadFilter(const std::wstring& filterName, Failure* failure);
bool UnloadFilter(const std::wstring& filterName, Failure* failure);

struct AttachRequest {
  std::wstring filterName;
  std::wstring volumeName;
  std::wstring instanceName;  // empty: the filter's default instance
  std::wstring altitude;      // empty: FilterAttach (the instance's registered altitude)
};
// FilterAttach, or FilterAttachAtAltitude when an altitude is given; `*createdInstanceName` is
// the name of the instance the filter manager created.
bool Attach(const AttachRequest& request, std::wstring* createdInstanceName, Failure* failure);
// FilterDetach; an empty instance name detaches the filter's default instance.
bool Detach(const std::wstring& filterName, const std::wstring& volumeName, const std::wstring& instanceName,
            Failure* failure);
// FilterGetDosName: "C:" for "\Device\HarddiskVolume3", say.
bool GetDosName(const std::wstring& volumeName, std::wstring* dosName, Failure* failure);

}  // namespace fltport
