// Facts from the NVM Express Base Specification 1.4 and the NVM Command Set: register
// offsets and bit fields, command and completion layouts, opcodes, status codes, feature,
// log page and identify identifiers. Shared by the emulated controller (hw/nvme) and the
// guest driver (guest/nvme): both sides of the bus speak the specification, neither sees
// the other's code. Header only, no behaviour.
#pragma once

#include <cstdint>

namespace ferry::spec::nvme {

// ---- controller registers (BAR0) -------------------------------------------------------------
inline constexpr uint32_t kRegCap = 0x00;     // 64-bit capabilities
inline constexpr uint32_t kRegVs = 0x08;      // version
inline constexpr uint32_t kRegIntms = 0x0c;   // interrupt mask set (write 1 to mask INTx vector)
inline constexpr uint32_t kRegIntmc = 0x10;   // interrupt mask clear
inline constexpr uint32_t kRegCc = 0x14;      // controller configuration
inline constexpr uint32_t kRegCsts = 0x1c;    // controller status
inline constexpr uint32_t kRegNssr = 0x20;    // NVM subsystem reset
inline constexpr uint32_t kRegAqa = 0x24;     // admin queue attributes
inline constexpr uint32_t kRegAsq = 0x28;     // 64-bit admin SQ base
inline constexpr uint32_t kRegAcq = 0x30;     // 64-bit admin CQ base
inline constexpr uint32_t kRegCmbloc = 0x38;
inline constexpr uint32_t kRegCmbsz = 0x3c;
inline constexpr uint32_t kDoorbellBase = 0x1000;
// With stride 4 (CAP.DSTRD = 0): SQ y tail doorbell at 0x1000 + 8y, CQ y head at 0x1004 + 8y.
inline constexpr uint32_t sq_tail_doorbell(uint16_t qid) { return kDoorbellBase + 8u * qid; }
inline constexpr uint32_t cq_head_doorbell(uint16_t qid) { return kDoorbellBase + 8u * qid + 4; }

// CAP fields (shift, width in bits).
inline constexpr unsigned kCapMqesShift = 0;     // 16 bits: max queue entries, 0's based
inline constexpr unsigned kCapCqrShift = 16;     // 1: contiguous queues required
inline constexpr unsigned kCapAmsShift = 17;     // 2: arbitration mechanisms supported
inline constexpr unsigned kCapToShift = 24;      // 8: ready timeout, 500 ms units
inline constexpr unsigned kCapDstrdShift = 32;   // 4: doorbell stride 2^(2+DSTRD)
inline constexpr unsigned kCapNssrsShift = 36;   // 1
inline constexpr unsigned kCapCssShift = 37;     // 8: command sets supported
inline constexpr unsigned kCapMpsminShift = 48;  // 4: min page size 2^(12+MPSMIN)
inline constexpr unsigned kCapMpsmaxShift = 52;  // 4
inline constexpr uint64_t kCapCssNvm = 1u << 0;       // NVM command set
inline constexpr uint64_t kCapCssIoSets = 1u << 6;    // one or more I/O command sets
inline constexpr uint64_t kCapCssAdminOnly = 1u << 7;

// CC fields.
inline constexpr uint32_t kCcEn = 1u << 0;
inline constexpr unsigned kCcCssShift = 4;      // 3 bits
inline constexpr unsigned kCcMpsShift = 7;      // 4 bits: page size 2^(12+MPS)
inline constexpr unsigned kCcAmsShift = 11;     // 3 bits
inline constexpr unsigned kCcShnShift = 14;     // 2 bits: 0 none, 1 normal, 2 abrupt
inline constexpr unsigned kCcIosqesShift = 16;  // 4 bits: SQ entry size 2^n (6 = 64 bytes)
inline constexpr unsigned kCcIocqesShift = 20;  // 4 bits: CQ entry size 2^n (4 = 16 bytes)
inline constexpr uint32_t kCcCssNvm = 0;
inline constexpr uint32_t kCcCssAll = 6;        // all supported I/O command sets
inline constexpr uint32_t kCcCssAdminOnly = 7;

// CSTS fields.
inline constexpr uint32_t kCstsRdy = 1u << 0;
inline constexpr uint32_t kCstsCfs = 1u << 1;   // controller fatal status
inline constexpr unsigned kCstsShstShift = 2;   // 2 bits
inline constexpr uint32_t kShstNormal = 0, kShstOccurring = 1, kShstComplete = 2;
inline constexpr uint32_t kCstsNssro = 1u << 4;

// AQA fields (0's based sizes).
inline constexpr uint32_t kAqaAsqsMask = 0xfff;
inline constexpr unsigned kAqaAcqsShift = 16;

// ---- commands --------------------------------------------------------------------------------
inline constexpr unsigned kSqeSize = 64;
inline constexpr unsigned kCqeSize = 16;

// Submission queue entry byte offsets (little-endian fields).
inline constexpr unsigned kSqeOpcode = 0;   // u8
inline constexpr unsigned kSqeFlags = 1;    // u8: FUSE bits 1:0, PSDT bits 7:6
inline constexpr unsigned kSqeCid = 2;      // u16
inline constexpr unsigned kSqeNsid = 4;     // u32
inline constexpr unsigned kSqeMptr = 16;    // u64
inline constexpr unsigned kSqePrp1 = 24;    // u64 (SGL: first descriptor, 16 bytes at 24)
inline constexpr unsigned kSqePrp2 = 32;    // u64
inline constexpr unsigned kSqeCdw10 = 40;   // u32 each up to cdw15 at 60
inline constexpr unsigned sqe_cdw(unsigned n) { return kSqeCdw10 + 4 * (n - 10); }
inline constexpr unsigned kPsdtShift = 6;
inline constexpr uint8_t kPsdtPrp = 0, kPsdtSglMptrContiguous = 1, kPsdtSglMptrSgl = 2;

// Completion queue entry byte offsets.
inline constexpr unsigned kCqeDw0 = 0;
inline constexpr unsigned kCqeDw1 = 4;
inline constexpr unsigned kCqeSqHead = 8;   // u16
inline constexpr unsigned kCqeSqId = 10;    // u16
inline constexpr unsigned kCqeCid = 12;     // u16
inline constexpr unsigned kCqeStatus = 14;  // u16: bit 0 phase, bits 15:1 status field

// Admin opcodes.
inline constexpr uint8_t kAdminDeleteSq = 0x00;
inline constexpr uint8_t kAdminCreateSq = 0x01;
inline constexpr uint8_t kAdminGetLogPage = 0x02;
inline constexpr uint8_t kAdminDeleteCq = 0x04;
inline constexpr uint8_t kAdminCreateCq = 0x05;
inline constexpr uint8_t kAdminIdentify = 0x06;
inline constexpr uint8_t kAdminAbort = 0x08;
inline constexpr uint8_t kAdminSetFeatures = 0x09;
inline constexpr uint8_t kAdminGetFeatures = 0x0a;
inline constexpr uint8_t kAdminAsyncEventRequest = 0x0c;
inline constexpr uint8_t kAdminNamespaceManagement = 0x0d;
inline constexpr uint8_t kAdminFirmwareCommit = 0x10;
inline constexpr uint8_t kAdminFirmwareDownload = 0x11;
inline constexpr uint8_t kAdminNamespaceAttachment = 0x15;
inline constexpr uint8_t kAdminKeepAlive = 0x18;
inline constexpr uint8_t kAdminDoorbellBufferConfig = 0x7c;
inline constexpr uint8_t kAdminFormatNvm = 0x80;

// NVM command set opcodes.
inline constexpr uint8_t kNvmFlush = 0x00;
inline constexpr uint8_t kNvmWrite = 0x01;
inline constexpr uint8_t kNvmRead = 0x02;
inline constexpr uint8_t kNvmWriteUncorrectable = 0x04;
inline constexpr uint8_t kNvmCompare = 0x05;
inline constexpr uint8_t kNvmWriteZeroes = 0x08;
inline constexpr uint8_t kNvmDatasetManagement = 0x09;
inline constexpr uint8_t kNvmVerify = 0x0c;
inline constexpr uint8_t kNvmCopy = 0x19;

// Create I/O SQ/CQ (cdw10: QID 15:0, QSIZE 31:16 0's based; cdw11 flags).
inline constexpr uint32_t kQueuePhysicallyContiguous = 1u << 0;  // cdw11 bit 0 (PC)
inline constexpr uint32_t kCqInterruptsEnabled = 1u << 1;        // CQ cdw11 bit 1 (IEN)
inline constexpr unsigned kCqIvShift = 16;                       // CQ cdw11 IV 31:16
inline constexpr unsigned kSqPriorityShift = 1;                  // SQ cdw11 QPRIO 2:1
inline constexpr unsigned kSqCqidShift = 16;                     // SQ cdw11 CQID 31:16

// ---- status field (the 15 bits above the phase bit, as QEMU and Linux keep them) ------------
// value = SC | SCT << 8 | CRD << 11 | M << 13 | DNR << 14
inline constexpr uint16_t kStatusDnr = 0x4000;
inline constexpr uint16_t kStatusMore = 0x2000;
inline constexpr uint16_t status_code(uint16_t status) { return status & 0xff; }
inline constexpr uint16_t status_type(uint16_t status) { return (status >> 8) & 0x7; }

// Generic command status (SCT 0).
inline constexpr uint16_t kSuccess = 0x0000;
inline constexpr uint16_t kInvalidOpcode = 0x0001;
inline constexpr uint16_t kInvalidField = 0x0002;
inline constexpr uint16_t kCidConflict = 0x0003;
inline constexpr uint16_t kDataTransferError = 0x0004;
inline constexpr uint16_t kAbortedPowerLoss = 0x0005;
inline constexpr uint16_t kInternalError = 0x0006;
inline constexpr uint16_t kAbortRequested = 0x0007;
inline constexpr uint16_t kAbortedSqDeletion = 0x0008;
inline constexpr uint16_t kInvalidNamespaceOrFormat = 0x000b;
inline constexpr uint16_t kCommandSequenceError = 0x000c;
inline constexpr uint16_t kInvalidSglSegmentDescriptor = 0x000d;
inline constexpr uint16_t kInvalidSglDescriptorCount = 0x000e;
inline constexpr uint16_t kDataSglLengthInvalid = 0x000f;
inline constexpr uint16_t kMetadataSglLengthInvalid = 0x0010;
inline constexpr uint16_t kSglDescriptorTypeInvalid = 0x0011;
inline constexpr uint16_t kInvalidUseOfCmb = 0x0012;
inline constexpr uint16_t kPrpOffsetInvalid = 0x0013;
inline constexpr uint16_t kSglOffsetInvalid = 0x0016;
inline constexpr uint16_t kLbaOutOfRange = 0x0080;
inline constexpr uint16_t kCapacityExceeded = 0x0081;
inline constexpr uint16_t kNamespaceNotReady = 0x0082;

// Command specific status (SCT 1).
inline constexpr uint16_t kCompletionQueueInvalid = 0x0100;
inline constexpr uint16_t kInvalidQueueIdentifier = 0x0101;
inline constexpr uint16_t kInvalidQueueSize = 0x0102;
inline constexpr uint16_t kAbortCommandLimitExceeded = 0x0103;
inline constexpr uint16_t kAsyncEventRequestLimitExceeded = 0x0105;
inline constexpr uint16_t kInvalidFirmwareSlot = 0x0106;
inline constexpr uint16_t kInvalidInterruptVector = 0x0108;
inline constexpr uint16_t kInvalidLogPage = 0x0109;
inline constexpr uint16_t kInvalidFormat = 0x010a;
inline constexpr uint16_t kInvalidQueueDeletion = 0x010c;
inline constexpr uint16_t kFeatureNotSaveable = 0x010d;
inline constexpr uint16_t kFeatureNotChangeable = 0x010e;
inline constexpr uint16_t kFeatureNotNamespaceSpecific = 0x010f;
inline constexpr uint16_t kConflictingAttributes = 0x0180;
inline constexpr uint16_t kAttemptedWriteToReadOnlyRange = 0x0182;

// Media and data integrity errors (SCT 2).
inline constexpr uint16_t kWriteFault = 0x0280;
inline constexpr uint16_t kUnrecoveredReadError = 0x0281;
inline constexpr uint16_t kCompareFailure = 0x0285;
inline constexpr uint16_t kAccessDenied = 0x0286;

// ---- features (Get/Set Features cdw10 FID 7:0, Get SEL 10:8, Set SV bit 31) -----------------
inline constexpr uint8_t kFeatArbitration = 0x01;
inline constexpr uint8_t kFeatPowerManagement = 0x02;
inline constexpr uint8_t kFeatLbaRangeType = 0x03;
inline constexpr uint8_t kFeatTemperatureThreshold = 0x04;
inline constexpr uint8_t kFeatErrorRecovery = 0x05;
inline constexpr uint8_t kFeatVolatileWriteCache = 0x06;
inline constexpr uint8_t kFeatNumberOfQueues = 0x07;
inline constexpr uint8_t kFeatInterruptCoalescing = 0x08;
inline constexpr uint8_t kFeatInterruptVectorConfig = 0x09;
inline constexpr uint8_t kFeatWriteAtomicity = 0x0a;
inline constexpr uint8_t kFeatAsyncEventConfig = 0x0b;
inline constexpr uint8_t kFeatAutonomousPowerState = 0x0c;
inline constexpr uint8_t kFeatTimestamp = 0x0e;
inline constexpr uint8_t kFeatKeepAliveTimer = 0x0f;
inline constexpr uint8_t kFeatCommandSetProfile = 0x19;
inline constexpr uint8_t kFeatSoftwareProgressMarker = 0x80;
inline constexpr uint8_t kFeatHostIdentifier = 0x81;
inline constexpr unsigned kFeatSelShift = 8;  // 0 current, 1 default, 2 saved, 3 capabilities
inline constexpr uint32_t kFeatSave = 1u << 31;

// ---- log pages (Get Log Page cdw10: LID 7:0, LSP 14:8, RAE 15, NUMDL 31:16) ------------------
inline constexpr uint8_t kLogErrorInformation = 0x01;
inline constexpr uint8_t kLogSmartHealth = 0x02;
inline constexpr uint8_t kLogFirmwareSlot = 0x03;
inline constexpr uint8_t kLogChangedNamespaces = 0x04;
inline constexpr uint8_t kLogCommandsSupported = 0x05;
inline constexpr uint32_t kLogRetainAsyncEvent = 1u << 15;
inline constexpr unsigned kErrorLogEntrySize = 64;

// ---- identify (cdw10 CNS 7:0, CNTID 31:16; cdw11 CSI 31:24) ----------------------------------
inline constexpr uint8_t kCnsNamespace = 0x00;
inline constexpr uint8_t kCnsController = 0x01;
inline constexpr uint8_t kCnsActiveNamespaces = 0x02;
inline constexpr uint8_t kCnsNamespaceDescriptors = 0x03;
inline constexpr uint8_t kCnsCsiNamespace = 0x05;
inline constexpr uint8_t kCnsCsiController = 0x06;
inline constexpr uint8_t kCnsCsiActiveNamespaces = 0x07;
inline constexpr uint8_t kCnsAllocatedNamespaces = 0x10;
inline constexpr uint8_t kCnsAllocatedNamespace = 0x11;
inline constexpr uint8_t kCsiNvm = 0x00;
inline constexpr unsigned kIdentifySize = 4096;

// Identify Controller byte offsets.
inline constexpr unsigned kIdCtrlVid = 0, kIdCtrlSsvid = 2, kIdCtrlSn = 4, kIdCtrlMn = 24,
                          kIdCtrlFr = 64, kIdCtrlRab = 72, kIdCtrlIeee = 73, kIdCtrlCmic = 76,
                          kIdCtrlMdts = 77, kIdCtrlCntlid = 78, kIdCtrlVer = 80,
                          kIdCtrlOaes = 92, kIdCtrlCtratt = 96, kIdCtrlCntrltype = 111,
                          kIdCtrlOacs = 256, kIdCtrlAcl = 258, kIdCtrlAerl = 259,
                          kIdCtrlFrmw = 260, kIdCtrlLpa = 261, kIdCtrlElpe = 262,
                          kIdCtrlNpss = 263, kIdCtrlWctemp = 266, kIdCtrlCctemp = 268,
                          kIdCtrlSqes = 512, kIdCtrlCqes = 513, kIdCtrlMaxcmd = 514,
                          kIdCtrlNn = 516, kIdCtrlOncs = 520, kIdCtrlFuses = 522,
                          kIdCtrlFna = 524, kIdCtrlVwc = 525, kIdCtrlSgls = 536,
                          kIdCtrlSubnqn = 768, kIdCtrlPsd0 = 2048;
inline constexpr uint16_t kOacsDoorbellBufferConfig = 1u << 8;
inline constexpr uint16_t kOncsCompare = 1u << 0, kOncsWriteUncorrectable = 1u << 1,
                          kOncsDatasetManagement = 1u << 2, kOncsWriteZeroes = 1u << 3,
                          kOncsSaveSelect = 1u << 4, kOncsTimestamp = 1u << 6;

// Identify Namespace byte offsets.
inline constexpr unsigned kIdNsNsze = 0, kIdNsNcap = 8, kIdNsNuse = 16, kIdNsNsfeat = 24,
                          kIdNsNlbaf = 25, kIdNsFlbas = 26, kIdNsMc = 27, kIdNsDpc = 28,
                          kIdNsDps = 29, kIdNsNmic = 30, kIdNsDlfeat = 33, kIdNsNvmcap = 48,
                          kIdNsNguid = 104, kIdNsEui64 = 120, kIdNsLbaf0 = 128;
// LBA format dword: MS 15:0, LBADS 23:16 (log2 of the data size), RP 25:24.
inline constexpr unsigned kLbafLbadsShift = 16;

// Namespace identification descriptor types (NIDT).
inline constexpr uint8_t kNidtEui64 = 1, kNidtNguid = 2, kNidtUuid = 3, kNidtCsi = 4;

// ---- asynchronous events (completion dw0: type 2:0, info 15:8, log page 23:16) ---------------
inline constexpr uint8_t kAerTypeError = 0;
inline constexpr uint8_t kAerTypeSmart = 1;
inline constexpr uint8_t kAerTypeNotice = 2;
inline constexpr uint8_t kAerTypeIoCommandSet = 6;
inline constexpr uint8_t kAerInfoErrorInvalidDoorbell = 0x00;       // write to invalid doorbell
inline constexpr uint8_t kAerInfoErrorInvalidDoorbellValue = 0x01;  // invalid doorbell value
inline constexpr uint8_t kAerInfoSmartReliability = 0x00;
inline constexpr uint8_t kAerInfoSmartTemperature = 0x01;
inline constexpr uint8_t kAerInfoSmartSpare = 0x02;
inline constexpr uint8_t kAerInfoNoticeNamespaceChanged = 0x00;
inline constexpr uint32_t aer_result(uint8_t type, uint8_t info, uint8_t log_page) {
  return uint32_t{type} | uint32_t{info} << 8 | uint32_t{log_page} << 16;
}
// Asynchronous Event Configuration feature bits.
inline constexpr uint32_t kAecSmartMask = 0xff;            // critical warning bits 7:0
inline constexpr uint32_t kAecNamespaceAttribute = 1u << 8;
inline constexpr uint32_t kAecFirmwareActivation = 1u << 9;

// SMART critical warning bits.
inline constexpr uint8_t kSmartWarnSpare = 1u << 0, kSmartWarnTemperature = 1u << 1,
                         kSmartWarnReliability = 1u << 2, kSmartWarnReadOnly = 1u << 3;
// SMART / Health log byte offsets (512 bytes; counters are 128-bit little-endian).
inline constexpr unsigned kSmartCriticalWarning = 0, kSmartTemperature = 1,
                          kSmartAvailableSpare = 3, kSmartSpareThreshold = 4,
                          kSmartPercentageUsed = 5, kSmartDataUnitsRead = 32,
                          kSmartDataUnitsWritten = 48, kSmartHostReads = 64,
                          kSmartHostWrites = 80, kSmartPowerCycles = 112,
                          kSmartPowerOnHours = 128, kSmartUnsafeShutdowns = 144,
                          kSmartMediaErrors = 160, kSmartErrorLogEntries = 176;

// ---- SGL descriptors (16 bytes: address u64, length u32, 3 reserved, identifier u8) ---------
inline constexpr unsigned kSglDescriptorSize = 16;
inline constexpr uint8_t kSglDataBlock = 0x0, kSglBitBucket = 0x1, kSglSegment = 0x2,
                         kSglLastSegment = 0x3;
inline constexpr uint8_t sgl_type(uint8_t identifier) { return identifier >> 4; }
inline constexpr uint8_t sgl_subtype(uint8_t identifier) { return identifier & 0xf; }

// ---- PCI identity --------------------------------------------------------------------------
inline constexpr uint32_t kPciClassNvmExpress = 0x010802;

// added for dma/namespace
// Identify Namespace I/O optimisation fields (16-bit, 0's based block counts).
inline constexpr unsigned kIdNsNpwg = 64, kIdNsNpwa = 66, kIdNsNpdg = 68, kIdNsNpda = 70,
                          kIdNsNows = 72;
// NSFEAT bits: deallocated/unwritten block errors supported; optimisation fields valid.
inline constexpr uint8_t kNsfeatDae = 1u << 2, kNsfeatOptperf = 1u << 4;
// Namespace Identification Descriptor lengths (NIDL) per type.
inline constexpr uint8_t kNidlEui64 = 8, kNidlNguid = 16, kNidlUuid = 16, kNidlCsi = 1;
// Identify Controller SGLS: bits 1:0 = 01b SGLs supported (no alignment requirement);
// bit 16 Bit Bucket descriptors; bit 18 an SGL may be longer than the transfer.
inline constexpr uint32_t kSglsSupported = 0x1;
inline constexpr uint32_t kSglsBitBucket = 1u << 16;
inline constexpr uint32_t kSglsExcessLength = 1u << 18;

}  // namespace ferry::spec::nvme
